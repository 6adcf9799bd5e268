// Package v1alpha1 holds the elafros.dev/v1alpha1 API: the Elafros resource
// types (Configuration, Revision, Route, Service and the inlined BuildSpec),
// their defaults, their validation and their condition helpers. Every entry
// point (manifest loader, HTTP API, action, bot) shares these rules; the
// package must not import any backend.
//
// +kubebuilder:object:generate=true
// +groupName=elafros.dev
package v1alpha1
