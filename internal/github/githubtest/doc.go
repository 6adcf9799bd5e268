// Package githubtest plays GitHub's REST API in an httptest.Server for the
// tests of the Action and the bot. Every request it receives is checked
// against GitHub's own OpenAPI description (the shared testdata's rest.json,
// through kin-openapi's openapi3filter), so a client that sends something
// GitHub would refuse, or calls a path GitHub does not have, fails the test
// instead of passing against a fake that drifted from the real API. Its
// answers are GitHub's documented example answers with the fake's state
// laid over them, and each is checked against the description too.
//
// The server keeps its state in memory (deployments and their statuses,
// issue comments and reactions, collaborator permissions, team membership,
// pull requests, commit statuses and check runs, the app's hook deliveries
// and redelivery attempts, installation tokens) so tests can seed it and
// assert on it, and it injects the faults a client must survive (5xx
// answers, primary and secondary rate limits, latency). It also signs
// webhook bodies exactly as GitHub does. It holds no elafros logic.
package githubtest
