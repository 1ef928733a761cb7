package api

import (
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"
)

// dashboard serves the admin dashboard's assets (web.Static, whose static/
// holds index.html and the rest) at / and /static/. The assets come from the
// caller, so that the scorer, which shares this package, links none of them.
func dashboard(e *echo.Echo, assets fs.FS) {
	static, _ := fs.Sub(assets, "static")
	files := http.FileServer(http.FS(static))
	e.GET("/static/*", echo.WrapHandler(http.StripPrefix("/static/", files)))
	e.GET("/", func(c echo.Context) error {
		page, err := fs.ReadFile(static, "index.html")
		if err != nil {
			return err
		}
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		return c.HTMLBlob(http.StatusOK, page)
	})
}
