// Package github is elafros' GitHub layer, shared by the Action and the
// bot: a client over go-github (a token or a GitHub App's installation
// tokens, GitHub Enterprise through the API URL) whose transport retries
// GitHub's 5xx answers and rate limits within a bounded wait, small typed
// operations (deployments and their statuses, one sticky pull request
// comment per key, reactions, a user's permission, team membership, pull
// requests, whether a commit's checks are green, the App's failed webhook
// deliveries and their redelivery), and webhook verification
// (X-Hub-Signature-256, two secrets for rotation, a capped body).
//
// It knows GitHub and nothing of traffic: it never moves a route itself.
// Deciding what a comment means is the command package's job, and acting
// on it the bot's.
package github
