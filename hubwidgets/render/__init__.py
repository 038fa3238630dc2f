"""Static renderings of a model: HTML and SVG that need no kernel, widget manager or script
(``hubwidgets.to_html``, ``save_html``, ``ModelTree._repr_html_``, the dashboard's fallback)."""
