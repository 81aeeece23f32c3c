/**
 * The manager's status page (roles/manager/status.ts): one self-contained document, no CDN
 * (clusters often run without internet). The server puts the first snapshot in place of
 * `__INITIAL_SNAPSHOT__`; the script renders it at once and then every `/events` message.
 */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kumo manager</title>
<style>
  :root { --active: #1a7f37; --fault: #cf222e; --new: #9a6700; --muted: #57606a; }
  body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 15px; margin: 24px 0 8px; }
  .muted { color: var(--muted); }
  table { border-collapse: collapse; min-width: 760px; }
  th, td { text-align: left; padding: 6px 12px; border-bottom: 1px solid #d0d7de; }
  th { font-weight: 600; background: #f6f8fa; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { font-weight: 600; text-transform: uppercase; font-size: 12px; }
  .state-active { color: var(--active); }
  .state-fault { color: var(--fault); }
  .state-new { color: var(--new); }
  .bar { background: #eaeef2; height: 10px; width: 160px; display: inline-block; vertical-align: middle; }
  .bar > span { display: block; height: 100%; background: #0969da; }
  .ring { display: flex; height: 18px; width: 760px; border: 1px solid #d0d7de; }
  .ring > span { height: 100%; border-right: 1px solid #fff; }
  #live.on { color: var(--active); }
  #live.off { color: var(--fault); }
</style>
</head>
<body>
<h1>kumo manager <span id="manager"></span></h1>
<div class="muted"><span id="live" class="off">connecting…</span> · updated <span id="updated">-</span>
  · auto-replace <span id="auto">-</span></div>

<h2>Nodes</h2>
<table>
  <thead><tr><th>node</th><th>attached</th><th>state</th><th>connected</th>
    <th>share of hash space</th><th>ops/s</th><th>items</th></tr></thead>
  <tbody id="nodes"></tbody>
</table>

<h2>Ring balance</h2>
<div id="ring" class="ring"></div>

<h2>Replace</h2>
<div id="replace"></div>

<script>
"use strict";
const COLORS = ["#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e", "#0550ae", "#6639ba"];

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function render(status) {
  document.getElementById("manager").textContent = status.manager;
  document.getElementById("updated").textContent = new Date(status.timeMs).toLocaleTimeString();
  document.getElementById("auto").textContent = status.autoReplace ? "on" : "off";
  const body = document.getElementById("nodes");
  body.replaceChildren();
  const ring = document.getElementById("ring");
  ring.replaceChildren();
  status.nodes.forEach((node, index) => {
    const row = document.createElement("tr");
    row.dataset.node = node.node;
    row.dataset.state = node.state;
    cell(row, node.node);
    cell(row, node.attached ? "attached" : "new");
    cell(row, node.state, "state state-" + node.state);
    cell(row, node.connected ? "yes" : "no");
    const share = cell(row, "");
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = (node.share * 100).toFixed(1) + "%";
    bar.appendChild(fill);
    share.append(bar, " " + (node.share * 100).toFixed(1) + "%");
    cell(row, node.opsPerSecond === undefined ? "-" : node.opsPerSecond.toFixed(1), "num");
    cell(row, node.items === undefined ? "-" : String(node.items), "num");
    body.appendChild(row);
    if (node.attached) {
      const arc = document.createElement("span");
      arc.style.width = (node.share * 100) + "%";
      arc.style.background = node.state === "fault" ? "#ffcecb" : COLORS[index % COLORS.length];
      arc.title = node.node + " " + (node.share * 100).toFixed(1) + "% " + node.state;
      ring.appendChild(arc);
    }
  });
  const r = status.replace;
  const replace = document.getElementById("replace");
  if (r.phase === "idle") {
    replace.textContent = status.ringsDiffer ? "idle (read and write rings differ)" : "idle";
  } else {
    const done = r.serversTotal === 0 ? 1 : r.serversDone / r.serversTotal;
    replace.replaceChildren();
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = (done * 100).toFixed(0) + "%";
    bar.appendChild(fill);
    replace.append((r.full ? "full " : "") + r.phase + " phase ", bar,
      " " + r.serversDone + "/" + r.serversTotal + " servers, " + r.recordsMoved + " records moved");
  }
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/events");
  events.onopen = () => { live.textContent = "live"; live.className = "on"; };
  events.onmessage = (message) => render(JSON.parse(message.data));
  // EventSource reconnects by itself; say so meanwhile.
  events.onerror = () => { live.textContent = "reconnecting…"; live.className = "off"; };
}

render(__INITIAL_SNAPSHOT__);
connect();
</script>
</body>
</html>
`;
