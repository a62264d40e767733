// MathJax for the key equations (pymdownx.arithmatex, generic mode). The MathJax library itself
// is not bundled: offline, the equations show as readable TeX source.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
