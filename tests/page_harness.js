// Runs the service page's own script in Node against a live service, with a minimal DOM stand-in:
// picks the first user, asks for recommendations, clicks "5" on the first one, then sends a bad item.
// Prints one JSON object of what the page showed. Usage: node page_harness.js BASE_URL PAGE_FILE
"use strict";
const fs = require("fs");
const [base, pageFile] = process.argv.slice(2);
const elements = {};
function cell() { return {textContent: "", className: "", children: [], appendChild(x) { this.children.push(x); }}; }
function element(id) {
  if (!elements[id]) {
    elements[id] = {id, value: "", textContent: "", className: "", dataset: {}, children: [], rows: [],
      appendChild(child) { this.children.push(child); },
      insertRow() { const row = {cells: [], insertCell() { const c = cell(); this.cells.push(c); return c; }}; this.rows.push(row); return row; }};
  }
  return elements[id];
}
const html = fs.readFileSync(pageFile, "utf8");
element("k").value = /id="k"[^>]*value="(\d+)"/.exec(html)[1];
element("feedback").dataset.feedbackUrl = /data-feedback-url="([^"]+)"/.exec(html)[1];
global.document = {getElementById: element, createElement: () => ({type: "", textContent: "", value: ""})};
const nodeFetch = fetch;
global.fetch = (url, options) => nodeFetch(base + url, options);
const settle = () => new Promise((resolve) => setTimeout(resolve, 700));
const shown = () => element("rows").rows.slice(-Number(element("k").value)).map((row) => row.cells.map((c) => c.textContent));
eval(/<script>([\s\S]*)<\/script>/.exec(html)[1]);
(async () => {
  const out = {};
  await settle();
  out.users = element("users").children.map((option) => option.value);
  element("user").value = out.users[0];
  element("pick").onsubmit({preventDefault() {}});
  await settle();
  out.before = shown();
  element("rows").rows[element("rows").rows.length - out.before.length].cells[4].children[0].onclick();  // "5"
  await settle();
  out.status = element("status").textContent;
  out.after = shown();
  element("fb-item").value = "no-such-item";
  element("fb-rating").value = "4";
  element("feedback").onsubmit({preventDefault() {}});
  await settle();
  out.error = [element("status").textContent, element("status").className];
  console.log(JSON.stringify(out));
})();
