/* The berth console: every call goes to /api/… of the local console process, which signs it
   as the caller; live updates come over berth's WebSocket, opened with a single-use ticket. */
(function () {
  "use strict";
  const SECRET = document.querySelector('meta[name="berth-console-secret"]').content;
  const $ = (id) => document.getElementById(id);
  const state = { sessions: new Map(), socket: null, subscribed: null, project: null, terminal: null, running: null, submitting: null, ended: new Set(), shown: new Map(), frames: Promise.resolve() };

  // --- talking to the API -----------------------------------------------------------------
  async function api(method, path, body) {
    let response;
    try {
      response = await fetch("/api" + path, {
        method,
        headers: { "X-Berth-Console": SECRET, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error("The console process is not answering: is `berth console` still running?");
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new Error(`${error.message || "the request failed"} (${error.code || response.status})`);
    }
    return data;
  }

  function showError(error) {
    const box = $("error");
    box.textContent = error instanceof Error ? error.message : String(error);
    box.hidden = false;
  }
  function clearError() { $("error").hidden = true; }
  async function attempt(action) {
    try { clearError(); return await action(); } catch (e) { showError(e); return null; }
  }

  // --- small DOM helpers ------------------------------------------------------------------
  function cell(text, label, className) {
    const td = document.createElement("td");
    if (label) td.dataset.label = label;
    if (className) td.className = className;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text == null ? "" : String(text);
    return td;
  }
  function button(text, onClick, secondary = true) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    if (secondary) b.className = "secondary";
    b.addEventListener("click", () => attempt(onClick));
    return b;
  }
  function age(iso) {
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }
  /* A table's rows, one per item: row(item) gives its cells (text or nodes) and the row's
     data and title; each cell is labelled with its column's header (shown on a phone). */
  function fill(id, items, row, emptyText) {
    const body = $(id);
    const headers = [...body.closest("table").tHead.rows[0].cells].map((th) => th.textContent);
    body.replaceChildren(...items.map((item) => {
      const { cells, data = {}, title } = row(item);
      const tr = document.createElement("tr");
      Object.assign(tr.dataset, data);
      if (title) tr.title = title;
      tr.append(...cells.map((content, index) => cell(content, headers[index])));
      return tr;
    }));
    if (!items.length && emptyText) {
      const td = cell(emptyText, null, "empty");
      td.colSpan = headers.length;
      const tr = document.createElement("tr");
      tr.append(td);
      body.append(tr);
    }
  }
  function status(text) { const span = document.createElement("span"); span.className = `status ${text}`; span.textContent = text; return span; }

  // --- live updates -----------------------------------------------------------------------
  let retry = 1000;
  async function connect() {
    const ticket = await attempt(() => api("POST", "/live/tickets"));
    if (!ticket) { setTimeout(connect, retry = Math.min(retry * 2, 30000)); return; }
    const socket = berthListen(ticket.url, onMessage, (what) => {
      $("live").textContent = what === "open" ? "live" : "offline";
      $("live").classList.toggle("on", what === "open");
      if (what === "open") {
        retry = 1000;
        if (state.subscribed) socket.send(JSON.stringify({ action: "subscribe", topic: state.subscribed }));
      }
      if (what === "closed" && state.socket === socket) { state.socket = null; setTimeout(connect, retry); }
    });
    state.socket = socket;
  }
  function onMessage(message) {
    if (message.type === "session" && message.session) { state.sessions.set(message.session.id, message.session); drawSessions(); return; }
    if (message.error) { showError(new Error(`${message.error.message} (${message.error.code})`)); return; }
    if (message.command_id && state.terminal && (message.type === "output" || message.type === "status")) {
      // one frame at a time: a back-fill from the saved log must land before what follows it
      state.frames = state.frames.then(() => terminalFrame(message)).catch(showError);
    }
  }
  // Shown bytes are counted in the log's bytes: each output frame names the bytes of the log
  // its text decodes (offset to next_offset). What lies before a frame (the terminal opened
  // mid-command, a lost frame) comes from the command's saved log; so does a frame that
  // overlaps what was shown, as its text cannot be cut at a byte (bytes that are not UTF-8
  // are U+FFFD in it). At a command's end, whatever the log holds past what was shown (a lost
  // last frame) is shown before its status.
  const utf8 = new TextEncoder();
  async function terminalFrame(message) {
    const id = message.command_id;
    if (message.type === "output") {
      const shown = state.shown.get(id) || 0;
      const start = typeof message.offset === "number" ? message.offset : shown;
      const end = typeof message.next_offset === "number" ? message.next_offset : start + utf8.encode(message.data).length;
      if (start > shown) await backfill(id, start);
      if ((state.shown.get(id) || 0) === start) {
        state.terminal.frame(message);
        state.shown.set(id, end);
      } else await backfill(id, end);
      return;
    }
    const final = BERTH_ENDED.has((message.data || {}).status);
    if (final && !ended({ id })) return;
    if (final) await backfill(id, null);
    if (state.terminal.frame(message)) state.terminal.prompt();
    loadHistory();
  }
  // the saved log from what was shown until it reaches `until` (all of it when null), waiting
  // a little for the worker to save it that far (it does about every second)
  async function backfill(id, until) {
    const { project } = state.project;
    for (let tries = 0; tries < 20; tries++) {
      const from = state.shown.get(id) || 0;
      if (until !== null && from >= until) return;
      const piece = await api("GET", `/workspaces/${project}/commands/${id}/output?offset=${from}`);
      if (piece.data) state.terminal.term.write(piece.data);
      state.shown.set(id, piece.next_offset);
      if (piece.complete || (until === null && piece.next_offset === from)) return;
      if (piece.next_offset === from) await new Promise((done) => setTimeout(done, 500));
    }
  }

  function subscribe(topic) {
    state.subscribed = topic;
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify({ action: "subscribe", topic }));
  }

  // --- sessions ---------------------------------------------------------------------------
  async function loadSessions() {
    const [profiles, sessions] = await Promise.all([api("GET", "/profiles"), api("GET", "/sessions")]);
    const select = $("profiles");
    if (!select.options.length) for (const p of profiles.items || profiles) select.add(new Option(p.name, p.name));
    state.sessions = new Map((sessions.items || []).map((s) => [s.id, s]));
    drawSessions();
  }
  function drawSessions() {
    const sessions = [...state.sessions.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
    fill("sessions", sessions, (s) => {
      const where = s.url ? Object.assign(document.createElement("a"), { href: s.url, textContent: s.url, target: "_blank", rel: "noopener" }) : (s.private_ip ? `${s.private_ip}:${s.port}` : "—");
      const actions = document.createElement("span");
      actions.append(button("Logs", () => showLogs(s.id)));
      if (!["STOPPED", "FAILED", "STOPPING"].includes(s.status)) actions.append(" ", button("Stop", () => stopSession(s.id)));
      return { cells: [s.id, s.profile, status(s.status), age(s.created_at), where, actions], data: { session: s.id }, title: s.error };
    }, "No sessions yet: start one above.");
  }
  async function stopSession(id) { const s = await api("DELETE", `/sessions/${id}`); state.sessions.set(s.id, s); drawSessions(); }
  async function showLogs(id) {
    const page = await api("GET", `/sessions/${id}/logs`);
    const box = $("session-logs");
    box.textContent = (page.items || []).map((l) => `${l.at}  ${l.message}`).join("\n") || "No log lines yet.";
    box.hidden = false;
  }
  $("start-session").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const s = await api("POST", "/sessions", { profile: new FormData(event.target).get("profile") });
      state.sessions.set(s.id, s);
      drawSessions();
    });
  });

  // --- jobs -------------------------------------------------------------------------------
  async function loadJobs() {
    const [catalogue, jobs] = await Promise.all([api("GET", "/jobs/catalogue"), api("GET", "/jobs")]);
    const select = $("runners");
    if (!select.options.length) for (const r of catalogue.items || catalogue) select.add(new Option(`${r.name} (${r.runtime})`, r.name));
    fill("jobs", jobs.items || [], (j) => {
      let output = "—";
      if (j.result_url) output = Object.assign(document.createElement("a"), { href: `/download/jobs/${j.id}/result?secret=${encodeURIComponent(SECRET)}`, textContent: "Download result" });
      else if (j.error) {
        output = document.createElement("span");
        output.append(`${j.error.message} `);
        if (j.error.failure_url) output.append(Object.assign(document.createElement("a"), { href: `/download/jobs/${j.id}/failure?secret=${encodeURIComponent(SECRET)}`, textContent: "Download failure" }));
      }
      return { cells: [j.id, j.name, status(j.status), age(j.created_at) + " ago", output], data: { job: j.id } };
    }, "No jobs yet: run one above.");
    if ((jobs.items || []).some((j) => !j.finished_at)) setTimeout(() => current() === "jobs" && attempt(loadJobs), 1000);
  }
  $("run-job").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const form = new FormData(event.target);
      let input;
      try { input = JSON.parse(form.get("input") || "{}"); } catch (e) { throw new Error("The input is not valid JSON: " + e.message); }
      await api("POST", "/jobs", { name: form.get("name"), input });
      await loadJobs();
    });
  });

  // --- terminal ---------------------------------------------------------------------------
  function terminalWidget() {
    if (!state.terminal) {
      state.terminal = new BerthTerminal($("terminal"), { onLine: runCommand, onInterrupt: interrupt });
      window.berthTerminal = state.terminal;
    }
    return state.terminal;
  }
  async function openTerminal(project, name) {
    state.project = { project, name };
    state.running = null;
    const terminal = terminalWidget();
    terminal.clear();
    terminal.notice(`project ${project}, terminal ${name}`);
    terminal.prompt();
    // a project nobody has used yet has no topic to hear: its first command makes it the caller's
    if (await loadHistory()) subscribe(`terminal:${project}:${name}`);
  }
  async function runCommand(line) {
    const { project, name } = state.project;
    state.submitting = attempt(() => api("POST", `/workspaces/${project}/commands`, { command: line, terminal: name }));
    const queued = await state.submitting;
    state.submitting = null;
    if (!queued) { state.terminal.prompt(); return; }
    state.running = queued.id;
    if (state.subscribed !== `terminal:${project}:${name}`) subscribe(`terminal:${project}:${name}`);
    loadHistory();
  }
  function ended(command) {
    if (state.running === command.id) state.running = null;
    if (state.ended.has(command.id)) return false;
    state.ended.add(command.id);
    return true;
  }
  async function interrupt() {
    if (state.submitting) await state.submitting; // Ctrl-C right after Enter stops that command
    if (!state.running) { state.terminal.prompt(); return; }
    const { project } = state.project;
    const command = await attempt(() => api("DELETE", `/workspaces/${project}/commands/${state.running}`));
    if (command && BERTH_ENDED.has(command.status) && ended(command)) { // it never started
      state.terminal.frame({ type: "status", data: { status: command.status, exit_code: command.exit_code } });
      state.terminal.prompt();
    }
    loadHistory();
  }
  async function loadHistory() {
    if (!state.project) return;
    const { project, name } = state.project;
    let page;
    try { page = await api("GET", `/workspaces/${project}/commands?limit=20`); } catch (e) { if (!/not_found/.test(e.message)) showError(e); return false; }
    fill("history", (page.items || []).filter((c) => c.terminal === name), (c) => ({
      cells: [Object.assign(document.createElement("code"), { textContent: c.command }), status(c.status), c.exit_code, age(c.created_at) + " ago"],
      data: { command: c.id },
    }));
    return true;
  }
  $("open-terminal").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    attempt(() => openTerminal(form.get("project"), form.get("terminal")));
  });

  // --- instances --------------------------------------------------------------------------
  async function loadInstances() {
    const page = await api("GET", "/instances");
    fill("instances", page.items || [], (i) => {
      const done = ["TERMINATED", "FAILED", "SUCCEEDED"].includes(i.status);
      const machine = i.ec2_instance_id ? `${i.ec2_instance_id} ${i.private_ip || ""}` : "—";
      const terminate = done ? "" : button("Terminate", async () => { await api("DELETE", `/instances/${i.id}`); await loadInstances(); });
      return { cells: [i.id, i.blob_id, status(i.status), machine, terminate], data: { instance: i.id } };
    }, "No instances yet: launch one from a blob above.");
  }
  $("create-instance").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => { await api("POST", "/instances", { blob_id: new FormData(event.target).get("blob_id") }); await loadInstances(); });
  });

  // --- usage ------------------------------------------------------------------------------
  async function loadUsage() {
    const usage = await api("GET", "/usage?group_by=capability");
    fill("usage", usage.groups || [], (g) => ({
      cells: [g.key, g.count, (g.seconds / 3600).toFixed(2), g.dollars.toFixed(4)],
    }), "Nothing used this month yet.");
    const b = usage.budget || {};
    $("budget").textContent = `Spent $${(usage.total && usage.total.dollars || 0).toFixed(4)} this month` +
      (b.monthly_budget_usd != null ? ` of a $${b.monthly_budget_usd} budget.` : " (no budget set).");
  }

  // --- pages ------------------------------------------------------------------------------
  const PAGES = { sessions: loadSessions, jobs: loadJobs, terminal: async () => { terminalWidget().resize(); }, instances: loadInstances, usage: loadUsage };
  function current() { const name = location.hash.slice(1); return PAGES[name] ? name : "sessions"; }
  function show() {
    const name = current();
    for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${name}`;
    for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.getAttribute("href") === `#${name}`);
    attempt(PAGES[name]);
  }
  window.addEventListener("hashchange", show);
  show();
  connect();
  setInterval(() => { if (current() === "sessions") drawSessions(); }, 15000); // ages move on
})();
