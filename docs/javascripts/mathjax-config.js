// MathJax 3 for the equations (pymdownx.arithmatex, generic mode: \( ... \) and \[ ... \]).
// The library is vendored beside this file (vendor/mathjax/tex-svg.js, loaded after this config):
// SVG output draws every glyph itself, so the equations render with no network and no font files.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
  svg: { fontCache: "global" },
};
