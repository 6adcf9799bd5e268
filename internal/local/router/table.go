package router

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/elafros/elafros/api/v1alpha1"
	"github.com/elafros/elafros/internal/reconcile"
)

// ErrHostConflict is returned (wrapped) by Apply when a plan claims a host
// that another route already serves. Nothing of the plan is applied.
var ErrHostConflict = errors.New("host is already served by another route")

var _ reconcile.Traffic = (*Router)(nil)

type routeKey struct{ namespace, name string }

func (k routeKey) String() string { return k.namespace + "/" + k.name }

// snapshot is everything ServeHTTP reads, immutable once published: Apply
// and Forget build a new one and swap it in, so a request holds on to the
// tables it started with and a traffic shift never disturbs it.
type snapshot struct {
	routes map[routeKey]*table
	hosts  map[string]hostRef
}

// hostRef is what a host serves: a route's split (revision == "") or one
// named target's revision.
type hostRef struct {
	table    *table
	revision string
}

// splitEntry is one revision of a split.
type splitEntry struct {
	revision string
	weight   int
	ready    bool
	// cookie is the Set-Cookie value that keeps a sticky client on
	// revision, formatted once per plan rather than per request.
	cookie string
}

// table is one route's plan as served. Everything but the weighted
// round-robin state is immutable.
type table struct {
	key routeKey
	// plan is a private copy of what was applied, to make re-applying the
	// same plan a no-op that keeps the round-robin going.
	plan       reconcile.TrafficPlan
	split      []splitEntry
	total      int
	tags       map[string]string
	tagList    string
	cookieName string

	// metrics has the series of every revision the plan names.
	metrics map[string]*revMetrics

	mu      sync.Mutex
	current []int // guarded by mu
}

// withMetrics looks up the series of every revision of t's plan.
func (t *table) withMetrics(m *metrics) *table {
	t.metrics = map[string]*revMetrics{}
	add := func(rev string) {
		if _, ok := t.metrics[rev]; !ok && rev != "" {
			t.metrics[rev] = m.forRevision(t.key.namespace, t.key.name, rev)
		}
	}
	for _, e := range t.split {
		add(e.revision)
	}
	for _, h := range t.plan.Hosts {
		add(h.Revision)
	}
	for _, rev := range t.plan.Tags {
		add(rev)
	}
	return t
}

func newTable(key routeKey, plan reconcile.TrafficPlan) *table {
	t := &table{
		key: key,
		plan: reconcile.TrafficPlan{
			Domain: plan.Domain,
			Split:  slices.Clone(plan.Split),
			Hosts:  maps.Clone(plan.Hosts),
			Tags:   maps.Clone(plan.Tags),
		},
		tags:       maps.Clone(plan.Tags),
		cookieName: "elafros-" + key.namespace + "-" + key.name,
	}
	for _, b := range plan.Split {
		// The reconciler lists only revisions with a share; a 0% entry
		// would never be picked anyway, so it is not kept.
		if b.Percent <= 0 {
			continue
		}
		ck := (&http.Cookie{
			Name:     t.cookieName,
			Value:    b.Revision,
			Path:     "/",
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		}).String()
		t.split = append(t.split, splitEntry{revision: b.Revision, weight: b.Percent, ready: b.Ready, cookie: ck})
		t.total += b.Percent
	}
	t.current = make([]int, len(t.split))
	tags := slices.Sorted(maps.Keys(plan.Tags))
	t.tagList = strings.Join(tags, ", ")
	return t
}

func (t *table) samePlan(p reconcile.TrafficPlan) bool {
	return t.plan.Domain == p.Domain &&
		slices.Equal(t.plan.Split, p.Split) &&
		maps.Equal(t.plan.Hosts, p.Hosts) &&
		maps.Equal(t.plan.Tags, p.Tags)
}

// pick chooses the next revision of the split with nginx's smooth weighted
// round-robin: every pick adds each weight to its entry's running score,
// takes the highest score (the first on ties) and takes the total off it.
// Over any total consecutive picks each entry is picked exactly weight
// times, spread out rather than in bursts. The split must not be empty.
func (t *table) pick() *splitEntry {
	t.mu.Lock()
	best := 0
	for i := range t.split {
		t.current[i] += t.split[i].weight
		if t.current[i] > t.current[best] {
			best = i
		}
	}
	t.current[best] -= t.total
	t.mu.Unlock()
	return &t.split[best]
}

// entry returns the split's entry for revision, or nil.
func (t *table) entry(revision string) *splitEntry {
	for i := range t.split {
		if t.split[i].revision == revision {
			return &t.split[i]
		}
	}
	return nil
}

// hostsOf lists the hosts a plan claims, canonical, with what each serves.
func hostsOf(plan reconcile.TrafficPlan) (map[string]string, error) {
	claimed := make(map[string]string, len(plan.Hosts)+1)
	if d := canonicalHost(plan.Domain); d != "" {
		claimed[d] = ""
	}
	for _, h := range slices.Sorted(maps.Keys(plan.Hosts)) {
		rev := plan.Hosts[h].Revision
		ch := canonicalHost(h)
		if ch == "" || rev == "" {
			return nil, fmt.Errorf("named target host %q -> revision %q: both must be non-empty", h, rev)
		}
		if other, dup := claimed[ch]; dup {
			if other == "" {
				return nil, fmt.Errorf("named target host %q is also the route's domain; a host serves either the split or one revision", h)
			}
			return nil, fmt.Errorf("named target host %q is given twice (revisions %q and %q)", h, other, rev)
		}
		claimed[ch] = rev
	}
	return claimed, nil
}

// Apply serves plan for route from now on. It is idempotent and cheap:
// re-applying the plan being served changes nothing (the weighted
// round-robin carries on where it was). Requests already in flight finish
// on the plan they started with. If a host of plan is served by another
// route, Apply returns an error wrapping ErrHostConflict and changes
// nothing.
func (r *Router) Apply(_ context.Context, route *v1alpha1.Route, plan reconcile.TrafficPlan) error {
	if route == nil {
		return errors.New("router: apply: route is nil")
	}
	key := routeKey{route.Namespace, route.Name}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	if cur := old.routes[key]; cur != nil && cur.samePlan(plan) {
		return nil
	}
	claimed, err := hostsOf(plan)
	if err != nil {
		return fmt.Errorf("router: apply route %s: %w", key, err)
	}
	for _, h := range slices.Sorted(maps.Keys(claimed)) {
		if ref, taken := old.hosts[h]; taken && ref.table.key != key {
			return fmt.Errorf("router: apply route %s: host %q: %w (%s)", key, h, ErrHostConflict, ref.table.key)
		}
	}
	t := newTable(key, plan).withMetrics(r.metrics)
	next := old.without(key, len(claimed))
	next.routes[key] = t
	for h, rev := range claimed {
		next.hosts[h] = hostRef{table: t, revision: rev}
	}
	r.snap.Store(next)
	return nil
}

// Forget stops serving the route namespace/name; its hosts answer 404 from
// now on. Requests in flight finish. Forgetting an unknown route does
// nothing.
func (r *Router) Forget(_ context.Context, namespace, name string) error {
	key := routeKey{namespace, name}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	if _, ok := old.routes[key]; !ok {
		return nil
	}
	r.snap.Store(old.without(key, 0))
	return nil
}

// without copies s leaving out route key, with room for extra hosts.
func (s *snapshot) without(key routeKey, extra int) *snapshot {
	next := &snapshot{
		routes: make(map[routeKey]*table, len(s.routes)+1),
		hosts:  make(map[string]hostRef, len(s.hosts)+extra),
	}
	for k, t := range s.routes {
		if k != key {
			next.routes[k] = t
		}
	}
	for h, ref := range s.hosts {
		if ref.table.key != key {
			next.hosts[h] = ref
		}
	}
	return next
}

// Routes lists the routes being served, as namespace/name, sorted.
func (r *Router) Routes() []string {
	s := r.snap.Load()
	out := make([]string, 0, len(s.routes))
	for k := range s.routes {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

// canonicalHost is host without its port and trailing dot, in lower case.
func canonicalHost(host string) string {
	// Only split off a port there is, sparing the error of a missing one.
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.TrimSuffix(host, ".")
	return strings.ToLower(host)
}
