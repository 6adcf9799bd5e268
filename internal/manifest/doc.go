// Package manifest loads elafros.yaml: multi-document YAML (or JSON) of
// elafros.dev/v1alpha1 objects, decoded strictly into the api types, then
// defaulted and validated with the api package's rules. Every error carries
// the file:line:column of the offending node and says what would be
// accepted. It must not talk to a cluster or a store.
package manifest
