// Chat: sessions, a streamed answer (POST /chat/stream), resume after a reload or a lost
// connection (GET …/turns/{tid}/events with Last-Event-ID), Stop, citations, tool calls.
// sessionStorage keeps the running turn (ids, last event id, what was shown): never a token.
import { api, ApiError, root } from "./api.js";
import { clear, h, promptDialog, say, sayError, when } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { readEvents } from "./sse.js";

const PENDING = "keel.chat.pending";
const FINAL = new Set(["turn.completed", "error"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function loadPending() {
  try {
    return JSON.parse(sessionStorage.getItem(PENDING) || "null");
  } catch {
    return null;
  }
}

function savePending(turn) {
  sessionStorage.setItem(
    PENDING,
    JSON.stringify({ sid: turn.sid, tid: turn.tid, last: turn.last, state: turn.view.state() }),
  );
}

/** One assistant answer as it streams: text per model step, citations, tool calls, approvals. */
class AnswerView {
  constructor(state) {
    this.steps = {};
    this.citations = [];
    this.tools = [];
    this.approvals = {};
    this.notice = "";
    this.error = null;
    this.done = false;
    Object.assign(this, state || {});
    this.body = h("div", { class: "body" });
    this.extra = h("div", {});
    this.el = h(
      "article",
      { class: "msg assistant", "aria-label": "Assistant answer" },
      h("p", { class: "who" }, "Keel"),
      this.body,
      this.extra,
    );
    this.frame = 0;
    this.render();
  }

  state() {
    const { steps, citations, tools, approvals, notice, error, done } = this;
    return { steps, citations, tools, approvals, notice, error, done };
  }

  text() {
    return Object.keys(this.steps)
      .map(Number)
      .sort((a, b) => a - b)
      .map((k) => this.steps[k])
      .filter(Boolean)
      .join("\n\n");
  }

  apply(name, data) {
    switch (name) {
      case "citation":
        if (!this.citations.some((c) => c.chunk_id === data.chunk_id)) this.citations.push(data);
        break;
      case "message.delta":
        this.steps[data.step] = (this.steps[data.step] || "") + data.delta;
        break;
      case "message.reset":
        this.steps[data.step] = "";
        break;
      case "approval.required":
        this.approvals[data.id] = { tool: data.tool, arguments: data.arguments, status: data.status || "pending" };
        break;
      case "approval.decided":
        this.approvals[data.id] = { ...(this.approvals[data.id] || {}), tool: data.tool, status: data.status };
        break;
      case "budget.warning":
        this.notice = data.message;
        break;
      case "turn.completed":
        this.done = true;
        this.steps = { 0: data.message?.content || "" };
        if (data.message?.citations?.length) this.citations = data.message.citations;
        this.tools = data.tool_calls || [];
        for (const a of data.approvals || []) this.approvals[a.id] = { tool: a.tool, arguments: a.arguments, status: a.status };
        if (data.budget_warning) this.notice = data.budget_warning.message;
        if (data.status === "failed" && data.error) this.error = data.error;
        break;
      case "error":
        this.done = true;
        this.error = { code: data.code, message: data.message };
        break;
      default:
        return; // events this page does not know are ignored
    }
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    clear(this.body).append(renderMarkdown(this.text()));
    if (!this.text() && !this.done) this.body.append(h("p", { class: "muted" }, "Thinking…"));
    clear(this.extra);
    const approvals = Object.entries(this.approvals);
    if (this.tools.length || approvals.length) {
      const items = [];
      for (const call of this.tools) {
        items.push(
          h(
            "li",
            {},
            h("strong", {}, call.name),
            ` ${call.status}`,
            call.result ? h("pre", {}, call.result) : null,
          ),
        );
      }
      for (const [id, a] of approvals) {
        if (this.tools.some((c) => c.approval_id === id)) continue;
        const waiting = a.status === "pending";
        items.push(
          h(
            "li",
            { dataset: { approval: id } },
            h("strong", {}, a.tool),
            waiting ? " awaiting approval " : ` ${a.status}`,
            waiting ? h("a", { href: `${root}/approvals` }, "Review in Approvals") : null,
          ),
        );
      }
      this.extra.append(h("section", { class: "tool-calls", "aria-label": "Tool calls" }, h("ul", {}, items)));
    }
    if (this.citations.length) {
      this.extra.append(
        h(
          "section",
          { class: "citations", "aria-label": "Sources" },
          h("p", { class: "who" }, "Sources"),
          h(
            "ol",
            {},
            this.citations.map((c) =>
              h(
                "li",
                {},
                h("button", { type: "button", class: "linklike", onclick: () => openPassage(c) }, c.title || c.document_id),
                c.page ? ` (page ${c.page})` : "",
              ),
            ),
          ),
        ),
      );
    }
    if (this.notice) this.extra.append(h("p", { class: "warning" }, this.notice));
    if (this.error) {
      const text = this.error.code === "cancelled" ? "Stopped." : `The answer failed: ${this.error.message}`;
      this.extra.append(h("p", { class: this.error.code === "cancelled" ? "muted" : "error" }, text));
    }
  }
}

// ---------------------------------------------------------------- the cited passage
let passageDialog;

async function findDocument(documentId) {
  const { knowledge_bases: kbs } = await api("/api/v1/knowledge-bases");
  for (const kb of kbs) {
    try {
      const doc = await api(`/api/v1/knowledge-bases/${encodeURIComponent(kb.id)}/documents/${encodeURIComponent(documentId)}`);
      return { kb, doc };
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
  }
  return null;
}

async function openPassage(citation) {
  if (!passageDialog) {
    passageDialog = h("dialog", { "aria-labelledby": "passage-title", class: "card" });
    document.body.append(passageDialog);
  }
  const content = h("div", { class: "stack" }, h("p", { class: "muted" }, "Loading the passage…"));
  clear(passageDialog).append(
    h("h2", { id: "passage-title" }, citation.title || "Cited passage"),
    content,
    h("form", { method: "dialog" }, h("button", { type: "submit" }, "Close")),
  );
  passageDialog.showModal();
  let text = citation.snippet || "";
  const meta = [];
  try {
    const found = await findDocument(citation.document_id);
    if (found) {
      meta.push(`Knowledge base: ${found.kb.name}`, `Document: ${found.doc.filename || found.doc.title || found.doc.id}`);
      const hits = await api(`/api/v1/knowledge-bases/${encodeURIComponent(found.kb.id)}/query`, {
        method: "POST",
        json: { query: (citation.snippet || citation.title || "passage").slice(0, 1000), top_k: 20 },
      });
      const hit = (hits.results || []).find((r) => r.chunk_id === citation.chunk_id);
      if (hit) text = hit.text;
    }
  } catch (err) {
    meta.push(`The document could not be read: ${err.message}`);
  }
  if (citation.page) meta.push(`Page ${citation.page}`);
  clear(content).append(
    meta.map((m) => h("p", { class: "muted" }, m)),
    h("blockquote", { class: "passage", "aria-label": "Cited passage" }, text),
    h("p", {}, h("a", { href: `${root}/documents?doc=${encodeURIComponent(citation.document_id)}` }, "Open in Documents")),
  );
}

// ---------------------------------------------------------------- the page
export async function render(view) {
  const params = new URLSearchParams(location.search);
  let sid = params.get("session");
  let current = null; // {sid, tid, last, view, controller}

  const sessionList = h("ul", {});
  const transcript = h("div", { class: "transcript", role: "log", "aria-label": "Conversation" });
  const message = h("textarea", { id: "message", name: "message", rows: 3, required: true, maxlength: 32000 });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", disabled: true }, "Stop");
  const form = h(
    "form",
    { class: "composer", "aria-label": "Compose" },
    h("label", { for: "message" }, "Message"),
    message,
    h("div", { class: "row" }, stop, send),
  );
  view.append(
    h(
      "div",
      { class: "chat" },
      h(
        "aside",
        { class: "sessions card", "aria-labelledby": "sessions-title" },
        h("h2", { id: "sessions-title" }, "Sessions"),
        h("p", {}, h("a", { class: "button", href: `${root}/chat` }, "New chat")),
        sessionList,
      ),
      h("section", { "aria-label": "Chat" }, transcript, form),
    ),
  );

  function running(on) {
    send.disabled = on;
    stop.disabled = !on;
  }

  async function loadSessions() {
    const { sessions } = await api("/api/v1/sessions?limit=50");
    clear(sessionList);
    if (!sessions.length) sessionList.append(h("li", { class: "muted" }, "No sessions yet."));
    for (const s of sessions) {
      const title = s.title || "Untitled";
      sessionList.append(
        h(
          "li",
          {},
          h("a", { href: `${root}/chat?session=${encodeURIComponent(s.id)}`, "aria-current": s.id === sid ? "true" : null, title: `${title} (${when(s.updated_at)})` }, title),
          h("button", { type: "button", "aria-label": `Rename session ${title}`, onclick: () => renameSession(s.id, title) }, "Rename"),
          h("button", { type: "button", class: "danger", "aria-label": `Delete session ${title}`, onclick: () => removeSession(s.id) }, "Delete"),
        ),
      );
    }
  }

  async function renameSession(id, title) {
    const next = await promptDialog(`Rename ${title}`, "Title", title, "Rename");
    if (next === null || next === title) return;
    try {
      await api(`/api/v1/sessions/${encodeURIComponent(id)}`, { method: "PATCH", json: { title: next } });
      say("Session renamed.", "ok");
      await loadSessions();
    } catch (err) {
      sayError(err);
    }
  }

  async function removeSession(id) {
    try {
      await api(`/api/v1/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
      if (loadPending()?.sid === id) sessionStorage.removeItem(PENDING);
      if (id === sid) {
        location.assign(`${root}/chat`);
        return;
      }
      say("Session deleted.", "ok");
      await loadSessions();
    } catch (err) {
      sayError(err);
    }
  }

  function userMessage(text) {
    return h("article", { class: "msg user", "aria-label": "Your message" }, h("p", { class: "who" }, "You"), h("div", { class: "body" }, h("p", { class: "passage" }, text)));
  }

  function assistantMessage(text) {
    const view = new AnswerView({ steps: { 0: text }, done: true });
    return view.el;
  }

  /** Read one response's events into the turn; true once the turn has ended. */
  async function consume(turn, resp) {
    for await (const ev of readEvents(resp)) {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        continue;
      }
      if (ev.event === "error" && data.code === "timeout" && !ev.id) return false; // the stream gave up: resume
      turn.view.apply(ev.event, data);
      if (ev.id) turn.last = ev.id;
      savePending(turn);
      if (FINAL.has(ev.event)) return true;
    }
    return false; // the stream closed early: dropped, or paused at an approval
  }

  /** Follow the turn until it ends, resuming with Last-Event-ID after every interruption. */
  async function follow(turn, firstResponse) {
    current = turn;
    running(true);
    let resp = firstResponse;
    let failures = 0;
    try {
      for (;;) {
        if (resp) {
          if (await consume(turn, resp)) break;
          failures = 0;
        }
        if (turn.controller.signal.aborted) return;
        await sleep(failures ? Math.min(10000, 1000 * 2 ** failures) : 250);
        try {
          const headers = turn.last ? { "Last-Event-ID": turn.last } : {};
          const path = `/api/v1/sessions/${encodeURIComponent(turn.sid)}/turns/${encodeURIComponent(turn.tid)}/events`;
          resp = await api(path, { raw: true, headers, signal: turn.controller.signal });
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) break; // the session or turn is gone
          if (turn.controller.signal.aborted) return;
          failures += 1;
          resp = null;
          say("Connection lost; reconnecting…");
        }
      }
    } catch (err) {
      if (turn.controller.signal.aborted) return;
      failures += 1;
      return follow(turn, null);
    } finally {
      if (current === turn && !turn.controller.signal.aborted) {
        current = null;
        running(false);
      }
    }
    sessionStorage.removeItem(PENDING);
    turn.view.render();
    say(turn.view.error && turn.view.error.code !== "cancelled" ? "The answer failed." : "Answer complete.", "ok");
    loadSessions().catch(sayError);
  }

  async function openSession() {
    clear(transcript);
    if (!sid) {
      transcript.append(h("p", { class: "muted" }, "Ask anything. Answers cite the documents you may read."));
      return;
    }
    const detail = await api(`/api/v1/sessions/${encodeURIComponent(sid)}`);
    const pending = loadPending();
    const last = detail.turns[detail.turns.length - 1];
    const unfinished = last && ["running", "awaiting_approval"].includes(last.status) ? last.id : null;
    const resumeId = pending && pending.sid === sid ? pending.tid : unfinished;
    for (const m of detail.messages) {
      if (m.role === "user") transcript.append(userMessage(m.content));
      else if (m.role === "assistant" && m.turn_id !== resumeId) transcript.append(assistantMessage(m.content));
    }
    if (resumeId) {
      const state = pending && pending.tid === resumeId ? pending : { last: null, state: null };
      const turn = { sid, tid: resumeId, last: state.last, view: new AnswerView(state.state), controller: new AbortController() };
      transcript.append(turn.view.el);
      say("Resuming the answer…");
      follow(turn, null);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = message.value;
    if (!text.trim()) {
      say("Type a message first.", "error");
      message.focus();
      return;
    }
    running(true);
    const controller = new AbortController();
    try {
      const resp = await api("/api/v1/chat/stream", {
        method: "POST",
        json: sid ? { message: text, session_id: sid } : { message: text },
        raw: true,
        signal: controller.signal,
      });
      const newSid = resp.headers.get("X-Session-ID");
      const tid = resp.headers.get("X-Turn-ID");
      if (!sid) {
        clear(transcript);
        sid = newSid;
        history.replaceState(null, "", `${root}/chat?session=${encodeURIComponent(sid)}`);
      }
      message.value = "";
      transcript.append(userMessage(text));
      const turn = { sid, tid, last: null, view: new AnswerView(null), controller };
      transcript.append(turn.view.el);
      savePending(turn);
      say("Answering…");
      loadSessions().catch(() => {});
      await follow(turn, resp);
    } catch (err) {
      running(false);
      sayError(err);
    }
  });

  message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stop.addEventListener("click", async () => {
    if (!current) return;
    stop.disabled = true;
    try {
      await api(`/api/v1/sessions/${encodeURIComponent(current.sid)}/turns/${encodeURIComponent(current.tid)}/cancel`, { method: "POST" });
      say("Stopping…");
    } catch (err) {
      sayError(err);
      stop.disabled = false;
    }
  });

  await Promise.all([loadSessions(), openSession()]);
}
