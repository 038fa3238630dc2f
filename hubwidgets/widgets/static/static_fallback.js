// hubwidgets StaticFallback: a live view exists, so the static copy of the same output
// (published beside the widget for renderers without widgets) is hidden, by a style rule
// that also covers copies rendered again later (windowed notebooks re-attach cells).
function render({ model, el }) {
  el.style.display = "none";
  const token = String(model.get("token") || "").replace(/[^A-Za-z0-9_-]/g, "");
  if (!token) return;
  const id = `hw-static-hide-${token}`;
  if (!document.getElementById(id)) {
    const style = document.createElement("style");
    style.id = id;
    style.textContent = `.hw-static-${token}{display:none !important}`;
    document.head.append(style);
  }
}
export default { render };
