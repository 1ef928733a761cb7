package api

import (
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelops/modelops/web"
)

// dashboard serves the embedded admin dashboard at / and /static/.
func dashboard(e *echo.Echo) {
	static, _ := fs.Sub(web.Static, "static")
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
