// Every visible text inside `root` (HTML text nodes and SVG <text>), with its colour, the
// colour under it (the ancestors' backgrounds composited, alpha included) and their
// WCAG contrast ratio.  Used by tests/test_browser.py.
(root) => {
  const parse = (c) => {
    if (!c || c === "none" || c === "transparent") return [0, 0, 0, 0];
    let m = c.match(/rgba?\(([^)]+)\)/);
    if (m) {
      const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    m = c.match(/color\(srgb ([^)]+)\)/);
    if (m) {
      const p = m[1].split(/[ /]+/).filter(Boolean).map(Number);
      return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
    }
    throw new Error("unparsed colour " + c);
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const backgroundUnder = (el) => {
    const chain = [];
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) chain.push(n);
    let color = [255, 255, 255, 1]; // the canvas
    for (const n of chain.reverse()) {
      const cs = getComputedStyle(n);
      color = over(parse(cs.backgroundColor), color);
    }
    return color;
  };
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const cs = getComputedStyle(n);
      if (cs.display === "none" || cs.visibility === "hidden" || Number(cs.opacity) === 0) return false;
    }
    return true;
  };
  const out = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    if (!t.textContent.trim()) continue;
    let el = t.parentElement;
    const svgText = el.closest("text");
    if (svgText) el = svgText;
    if (seen.has(el) || !visible(el)) continue;
    seen.add(el);
    const cs = getComputedStyle(el);
    let bg;
    if (svgText) { // plotly stacks several svgs: the paper is the bottom one's background
      const box = el.ownerSVGElement.parentElement;
      bg = backgroundUnder(box);
      for (const layer of box.querySelectorAll(":scope > svg")) bg = over(parse(getComputedStyle(layer).backgroundColor), bg);
    } else {
      bg = backgroundUnder(el);
    }
    let fg;
    if (svgText) {
      fg = parse(cs.fill);
      fg[3] *= Number(cs.fillOpacity || 1);
    } else {
      fg = parse(cs.color);
    }
    const solid = over(fg, bg);
    const [a, b] = [lum(solid), lum(bg)].sort((x, y) => y - x);
    out.push({ text: el.textContent.trim().slice(0, 40), svg: !!svgText, color: cs.color,
      fill: svgText ? cs.fill : "", bg: `rgb(${bg.slice(0, 3).map(Math.round).join(", ")})`,
      ratio: Math.round(((a + 0.05) / (b + 0.05)) * 100) / 100 });
  }
  return out;
}
