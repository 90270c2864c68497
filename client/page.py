"""The service's one HTML page: pick a user, see recommendations with reasons, give feedback (no external assets)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedrec recommendations</title>
<style>
body{font:15px system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35em;text-align:left;vertical-align:top}
.why{color:#555;font-size:90%}.err{color:#b00}button{margin-right:.3em}
</style></head>
<body>
<h1>fedrec recommendations</h1>
<form id="pick">
  <label>User <input id="user" name="user" list="users" required></label>
  <datalist id="users"></datalist>
  <label>How many <input id="k" name="k" type="number" min="1" max="100" value="10"></label>
  <button type="submit">Recommend</button>
</form>
<form id="feedback" data-feedback-url="/v1/users/{user}/feedback">
  <label>Item <input id="fb-item" name="item" required></label>
  <label>Rating <input id="fb-rating" name="rating" type="number" step="0.5"></label>
  <label>or event <select id="fb-event" name="event"><option value="">-</option>
    <option>click</option><option>purchase</option><option>skip</option></select></label>
  <button type="submit">Send feedback</button>
</form>
<p id="status"></p>
<table><thead><tr><th>#</th><th>item</th><th>score</th><th>why</th><th>feedback</th></tr></thead>
<tbody id="rows"></tbody></table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
function say(text, bad) { $("status").textContent = text; $("status").className = bad ? "err" : ""; }
async function call(url, options) {
  const reply = await fetch(url, options);
  const body = await reply.json().catch(() => ({error: reply.statusText}));
  if (!reply.ok) throw new Error(body.error || reply.statusText);
  return body;
}
function fmt(x) { return (x >= 0 ? "+" : "") + x.toFixed(2); }
function why(e) {
  const rated = e.because_you_rated.map((r) =>
    `${r.similarity >= 0 ? "like" : "unlike"} ${r.item} (you gave ${r.your_rating}) ${fmt(r.contribution)}`);
  return `mean ${e.global_mean.toFixed(2)}, your tendency ${fmt(e.user_bias)}, item popularity ${fmt(e.item_bias)}` +
    (rated.length ? `; ${rated.join(", ")}; other rated items ${fmt(e.other_rated_items)}` : "");
}
async function recommend() {
  const user = $("user").value.trim();
  if (!user) return;
  try {
    const body = await call(`/v1/users/${enc(user)}/recommendations?k=${enc($("k").value)}&explain=true`);
    const rows = $("rows"); rows.textContent = "";
    body.items.forEach((row, n) => {
      const tr = rows.insertRow();
      [String(n + 1), row.item, row.score.toFixed(3), why(row.explanation)].forEach((text, c) => {
        const td = tr.insertCell(); td.textContent = text; if (c === 3) td.className = "why";
      });
      const td = tr.insertCell();
      for (const [label, payload] of [["5", {rating: 5}], ["1", {rating: 1}], ["click", {event: "click"}], ["skip", {event: "skip"}]]) {
        const b = document.createElement("button"); b.type = "button"; b.textContent = label;
        b.onclick = () => send(user, {item: row.item, ...payload}); td.appendChild(b);
      }
    });
    say(`${body.items.length} recommendations for ${user}`);
  } catch (err) { say(err.message, true); }
}
async function send(user, payload) {
  const url = $("feedback").dataset.feedbackUrl.replace("{user}", enc(user));
  try {
    const body = await call(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(payload)});
    await recommend();
    say(`stored event ${body.stored} (${payload.item}: rating ${body.rating}), folded in in ${body.fold_in_ms.toFixed(2)} ms`);
  } catch (err) { say(err.message, true); }
}
$("pick").onsubmit = (ev) => { ev.preventDefault(); recommend(); };
$("feedback").onsubmit = (ev) => {
  ev.preventDefault();
  const user = $("user").value.trim();
  if (!user) { say("pick a user first", true); return; }
  const payload = {item: $("fb-item").value.trim()};
  if ($("fb-event").value) payload.event = $("fb-event").value; else payload.rating = Number($("fb-rating").value);
  send(user, payload);
};
call("/v1/users").then((body) => {
  for (const user of body.users) { const o = document.createElement("option"); o.value = user; $("users").appendChild(o); }
}).catch((err) => say(err.message, true));
</script>
</body></html>
"""
