// Package web holds the admin dashboard: static HTML, CSS and JavaScript with no
// build step and nothing fetched from elsewhere, embedded into the control plane.
package web

import "embed"

// Static is the dashboard's files, under static/.
//
//go:embed static
var Static embed.FS
