"""The administrator's console at /console: server-rendered pages (Jinja2) over the same services the API's
routers call. No JavaScript library, no build step, no CDN: the stylesheet and one small script ship here."""
