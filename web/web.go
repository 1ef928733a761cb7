// Package web holds the admin dashboard: static HTML, CSS and JavaScript with no
// build step and nothing fetched from elsewhere, embedded into the control plane.
// The charts use uPlot, whose built files are kept in static/vendor/uplot.
package web

import "embed"

// Static is the dashboard's files, under static/.
//
//go:embed static
var Static embed.FS
