// The admin pages: one section per admin API, each shown only to callers whose permissions
// allow it (docs/api.md's table). The API enforces every one of them anyway.
import { api, root } from "./api.js";
import { ADMIN_PERMISSIONS } from "./app.js";
import { uploadFile } from "./documents.js";
import { append, clear, confirmDialog, field, h, nextId, num, say, sayError, table, when } from "./dom.js";

function ids(text) {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function checkbox(label, checked, hint) {
  const box = h("input", { type: "checkbox", id: nextId("c"), checked: Boolean(checked) });
  const parts = [box, h("label", { for: box.id }, label)];
  const wrap = h("div", { class: "check" }, parts);
  if (hint) {
    const hintEl = h("span", { class: "hint", id: `${box.id}-hint` }, ` ${hint}`);
    box.setAttribute("aria-describedby", hintEl.id);
    wrap.append(hintEl);
  }
  return { box, el: wrap };
}

function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

/** A ``<section>`` with its own heading, for a part of an admin section. */
function part(title, ...children) {
  const id = nextId("part");
  return h("section", { class: "card stack", "aria-labelledby": id }, h("h3", { id }, title), children);
}

// ------------------------------------------------------------------------------ tools
/** The approval rule and groups of a tool server (the add form and each server's edit). */
function ruleControls(server) {
  const approval = checkbox("Requires approval", server.requires_approval, "every call waits for a person's decision");
  const sideEffects = checkbox(
    "Has side effects",
    server.side_effects !== false,
    "off only for read-only tools: they then run without approval after the model read others' documents",
  );
  const approver = h("input", { name: "approver_group", autocomplete: "off", value: server.approver_group || "" });
  const allowed = h("input", { name: "allowed_groups", autocomplete: "off", value: (server.allowed_groups || []).join(", ") });
  const el = h(
    "div",
    { class: "stack" },
    approval.el,
    field("Approver group", approver, "Who decides; empty: the requester decides"),
    field("Allowed groups", allowed, "Group ids, separated by commas; empty: everyone"),
    sideEffects.el,
  );
  return {
    el,
    value: () => ({
      requires_approval: approval.box.checked,
      approver_group: approver.value.trim() || null,
      allowed_groups: ids(allowed.value),
      side_effects: sideEffects.box.checked,
    }),
  };
}

function serverCard(server, reload) {
  const titleId = nextId("server");
  const rule = ruleControls(server);
  const save = h("button", { type: "button", class: "primary", "aria-label": `Save rule of ${server.name}` }, "Save rule");
  const toggleLabel = server.enabled ? "Switch off" : "Switch on";
  const toggle = h("button", { type: "button", "aria-label": `${toggleLabel} ${server.name}` }, toggleLabel);
  const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove ${server.name}` }, "Remove");

  async function patch(body, done) {
    try {
      await api(`/api/v1/admin/tools/${encodeURIComponent(server.id)}`, { method: "PATCH", json: body });
      say(done, "ok");
      await reload();
    } catch (err) {
      sayError(err);
    }
  }
  save.addEventListener("click", () => patch(rule.value(), `Saved the rule of ${server.name}.`));
  toggle.addEventListener("click", () =>
    patch({ enabled: !server.enabled }, `${server.enabled ? "Switched off" : "Switched on"} ${server.name}.`),
  );
  remove.addEventListener("click", async () => {
    const ok = await confirmDialog(
      `Remove ${server.name}?`,
      "Its tools stop being offered to every session's next turn. Adding it again discovers them anew.",
      "Remove",
    );
    if (!ok) return;
    try {
      await api(`/api/v1/admin/tools/${encodeURIComponent(server.id)}`, { method: "DELETE" });
      say(`Removed ${server.name}.`, "ok");
      await reload();
    } catch (err) {
      sayError(err);
    }
  });

  const tools = server.tools.length
    ? table(
        `Tools of ${server.name}`,
        ["Tool", "Description", "Offered"],
        server.tools.map((t) =>
          h("tr", {}, h("td", {}, h("code", {}, t.name)), h("td", {}, t.description), h("td", {}, t.enabled ? "yes" : "no")),
        ),
      )
    : h("p", { class: "muted" }, "No tools discovered.");
  return h(
    "article",
    { class: "card stack", "aria-labelledby": titleId, dataset: { server: server.id } },
    h("h3", { id: titleId }, server.name),
    facts([
      ["Status", h("span", { class: `badge ${server.status}` }, server.status)],
      ["Transport", server.transport],
      server.command ? ["Command", h("code", {}, server.command)] : null,
      ["Approval", server.requires_approval ? "every call needs approval" : "not needed"],
      ["Approver group", server.approver_group || "(the requester)"],
      ["Allowed groups", server.allowed_groups.length ? server.allowed_groups.join(", ") : "everyone"],
      ["Side effects", server.side_effects ? "yes" : "no (read-only)"],
      ["Added", `${when(server.created_at)} by ${server.created_by}`],
    ]),
    server.error ? h("p", { class: "error" }, server.error) : null,
    tools,
    h(
      "details",
      {},
      h("summary", {}, "Edit the rule", h("span", { class: "sr-only" }, ` of ${server.name}`)),
      h("div", { class: "stack" }, rule.el, h("div", { class: "row" }, save)),
    ),
    h("div", { class: "row" }, toggle, remove),
  );
}

async function renderTools(area) {
  const list = h("div", { class: "stack" });
  const name = h("input", { name: "name", required: true, maxlength: 40, autocomplete: "off" });
  const transport = h(
    "select",
    { name: "transport" },
    h("option", { value: "http" }, "HTTP"),
    h("option", { value: "stdio" }, "stdio (a local command)"),
  );
  const url = h("input", { name: "url", autocomplete: "off", inputmode: "url" });
  const command = h("input", { name: "command", autocomplete: "off" });
  const args = h("textarea", { name: "args", rows: 2 });
  const urlField = field("URL", url, "The server's MCP endpoint; its host must be an allowed tool host");
  const commandFields = h(
    "div",
    { class: "stack" },
    field("Command", command, "An executable allowed by KEEL_MCP_STDIO_ALLOWED_COMMANDS"),
    field("Arguments", args, "One per line"),
  );
  commandFields.hidden = true;
  transport.addEventListener("change", () => {
    urlField.hidden = transport.value !== "http";
    commandFields.hidden = transport.value !== "stdio";
  });
  const rule = ruleControls({});
  const add = h("button", { type: "submit", class: "primary" }, "Add tool server");
  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "add-tool-title", novalidate: true },
    h("h3", { id: "add-tool-title" }, "Add a tool server"),
    field("Name", name, "Letters, digits, - and _; the tools are offered as <name>__<tool>"),
    field("Transport", transport),
    urlField,
    commandFields,
    rule.el,
    h("div", { class: "row" }, add),
  );

  async function reload() {
    const { tool_servers: servers } = await api("/api/v1/admin/tools");
    append(clear(list), [
      h("h3", {}, "Allowlist"),
      servers.length ? servers.map((s) => serverCard(s, reload)) : h("p", { class: "muted" }, "No tool servers yet."),
    ]);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      say("Name the tool server.", "error");
      name.focus();
      return;
    }
    const body = { name: name.value.trim(), transport: transport.value, ...rule.value() };
    if (!body.approver_group) delete body.approver_group;
    if (transport.value === "http") body.url = url.value.trim();
    else {
      body.command = command.value.trim();
      body.args = args.value.split("\n").map((a) => a.trim()).filter(Boolean);
    }
    add.disabled = true;
    say(`Adding ${body.name} and discovering its tools…`);
    try {
      const server = await api("/api/v1/admin/tools", { method: "POST", json: body });
      say(`Added ${server.name}: ${server.tools.length} tool${server.tools.length === 1 ? "" : "s"} discovered.`, "ok");
      form.reset();
      urlField.hidden = false;
      commandFields.hidden = true;
      await reload();
    } catch (err) {
      sayError(err);
    } finally {
      add.disabled = false;
    }
  });

  area.append(form, list);
  await reload();
}

// ------------------------------------------------------------------------------ audit
async function auditEvents() {
  try {
    const doc = await api("/openapi.json");
    return doc.components.schemas.AuditEvent.enum;
  } catch {
    return [];
  }
}

function isoFromLocal(value) {
  return value ? new Date(value).toISOString() : "";
}

function verifyPart() {
  const out = h("div", { class: "stack" });
  const run = h("button", { type: "button" }, "Verify the chain");
  run.addEventListener("click", async () => {
    run.disabled = true;
    clear(out).append(h("p", { class: "muted" }, "Checking every row…"));
    try {
      const r = await api("/api/v1/admin/audit/verify");
      const text = r.ok
        ? `Chain intact: ${num(r.rows)} rows verified (${num(r.tombstones)} purged rows linked by tombstones), last seq ${r.last_seq}.`
        : `Chain BROKEN at seq ${r.bad_seq}: ${r.reason} (${num(r.rows)} rows verified before it).`;
      clear(out).append(
        h("p", { class: r.ok ? "ok-box" : "error-box", dataset: { ok: String(r.ok) } }, text),
        h("p", { class: "hint" }, `Checked ${when(r.checked_at)} with the API's key.`),
      );
    } catch (err) {
      clear(out);
      sayError(err);
    } finally {
      run.disabled = false;
    }
  });
  return part("Chain verification", h("p", { class: "hint" }, "Walks every row's hash and link, as keel audit verify does."), h("div", { class: "row" }, run), out);
}

async function renderAudit(area) {
  const events = await auditEvents();
  const user = h("input", { name: "user_id", autocomplete: "off" });
  const event = h(
    "select",
    { name: "event" },
    h("option", { value: "" }, "Any event"),
    events.map((e) => h("option", { value: e }, e)),
  );
  const since = h("input", { type: "datetime-local", name: "since", step: 1 });
  const until = h("input", { type: "datetime-local", name: "until", step: 1 });
  const perPage = h(
    "select",
    { name: "limit" },
    [10, 50, 100, 500].map((n) => h("option", { value: n, selected: n === 50 }, String(n))),
  );
  const exportLink = h("a", { class: "button", download: "audit.jsonl" }, "Export as JSON lines");
  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "audit-filter-title" },
    h("h3", { id: "audit-filter-title" }, "Filters"),
    h(
      "div",
      { class: "filters" },
      field("User", user, "A user id"),
      field("Event", event),
      field("Since", since, "Your local time; inclusive"),
      field("Until", until, "Your local time; exclusive"),
      field("Events per page", perPage),
    ),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Show events"), exportLink),
  );
  const results = h("div", {});
  const newer = h("button", { type: "button" }, "Newer events");
  const older = h("button", { type: "button" }, "Older events");
  const pager = h("div", { class: "row" }, newer, older);
  let cursors = [null]; // before_seq of each page shown so far; the last is the current page

  function params() {
    const p = new URLSearchParams();
    if (user.value.trim()) p.set("user_id", user.value.trim());
    if (event.value) p.set("event", event.value);
    if (since.value) p.set("since", isoFromLocal(since.value));
    if (until.value) p.set("until", isoFromLocal(until.value));
    return p;
  }

  let latest = 0; // only the latest load renders
  async function load() {
    const mine = ++latest;
    const p = params();
    exportLink.setAttribute("href", `${root}/api/v1/admin/audit/export?${p}`);
    p.set("limit", perPage.value);
    const before = cursors[cursors.length - 1];
    if (before) p.set("before_seq", String(before));
    try {
      const page = await api(`/api/v1/admin/audit?${p}`);
      if (mine !== latest) return;
      const rows = page.events.map((e) =>
        h(
          "tr",
          { dataset: { seq: String(e.seq) } },
          h("td", { class: "col-seq" }, String(e.seq)),
          h("td", {}, when(e.occurred_at)),
          h("td", {}, h("code", {}, e.event)),
          h("td", {}, e.user_id || ""),
          h("td", { class: "col-outcome" }, h("span", { class: `badge ${e.outcome}` }, e.outcome)),
          h(
            "td",
            {},
            h(
              "details",
              {},
              h("summary", {}, "Details", h("span", { class: "sr-only" }, ` of event ${e.seq}`)),
              h(
                "pre",
                {},
                JSON.stringify(
                  {
                    outcome: e.outcome,
                    resource: e.resource_type ? `${e.resource_type}:${e.resource_id || ""}` : null,
                    details: e.details,
                    session_id: e.session_id,
                    request_id: e.request_id,
                    trace_id: e.trace_id,
                    hash: e.hash,
                    prev_hash: e.prev_hash,
                  },
                  null,
                  2,
                ),
              ),
            ),
          ),
        ),
      );
      clear(results).append(
        rows.length
          ? table("Audit events, newest first", ["Seq", "Time", "Event", "User", "Outcome", "Details"], rows)
          : h("p", { class: "muted" }, "No events match."),
      );
      newer.disabled = cursors.length === 1;
      older.disabled = page.next_before_seq === null;
      older.dataset.next = page.next_before_seq === null ? "" : String(page.next_before_seq);
    } catch (err) {
      sayError(err);
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    cursors = [null];
    load();
  });
  older.addEventListener("click", () => {
    if (!older.dataset.next) return;
    cursors.push(Number(older.dataset.next));
    load();
  });
  newer.addEventListener("click", () => {
    if (cursors.length > 1) cursors.pop();
    load();
  });
  area.append(verifyPart(), form, results, pager);
  await load();
}

// ---------------------------------------------------------------- usage and budgets
function budgetPart() {
  const userId = h("input", { name: "budget_user", autocomplete: "off", required: true });
  const out = h("div", { class: "stack" });
  const form = h(
    "form",
    { class: "stack" },
    field("User id", userId),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Look up budget")),
  );

  async function show(id) {
    let budget;
    try {
      budget = await api(`/api/v1/admin/budgets/${encodeURIComponent(id)}`);
    } catch (err) {
      sayError(err);
      return;
    }
    const daily = h("input", { type: "number", min: 1, name: "daily_tokens", value: budget.daily_tokens ?? "" });
    const monthly = h("input", { type: "number", min: 1, name: "monthly_tokens", value: budget.monthly_tokens ?? "" });
    const save = h("button", { type: "button", class: "primary", "aria-label": `Save budget of ${id}` }, "Save budget");
    const reset = h("button", { type: "button", "aria-label": `Clear budget of ${id}` }, "Clear budget");
    const limit = (input) => (input.value.trim() ? Number(input.value) : null);
    save.addEventListener("click", async () => {
      try {
        await api(`/api/v1/admin/budgets/${encodeURIComponent(id)}`, {
          method: "PUT",
          json: { daily_tokens: limit(daily), monthly_tokens: limit(monthly) },
        });
        say(`Saved the budget of ${id}.`, "ok");
        await show(id);
      } catch (err) {
        sayError(err);
      }
    });
    reset.addEventListener("click", async () => {
      const ok = await confirmDialog(`Clear the budget of ${id}?`, "The default budgets apply again from the user's next model call.", "Clear budget");
      if (!ok) return;
      try {
        await api(`/api/v1/admin/budgets/${encodeURIComponent(id)}`, { method: "DELETE" });
        say(`Cleared the budget of ${id}: the defaults apply.`, "ok");
        await show(id);
      } catch (err) {
        sayError(err);
      }
    });
    const fmt = (v) => (v === null ? "unlimited" : `${num(v)} tokens`);
    clear(out).append(
      h("h4", {}, `Budget of ${id}`),
      facts([
        ["Daily", fmt(budget.daily_tokens)],
        ["Monthly", fmt(budget.monthly_tokens)],
        ["Source", budget.source === "override" ? `set by ${budget.updated_by} ${when(budget.updated_at)}` : "the defaults"],
      ]),
      field("Daily tokens", daily, "Empty: unlimited"),
      field("Monthly tokens", monthly, "Empty: unlimited"),
      h("div", { class: "row" }, save, budget.source === "override" ? reset : null),
    );
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (userId.value.trim()) show(userId.value.trim());
  });
  return {
    el: part("Budgets", form, out),
    open: (id) => {
      userId.value = id;
      show(id);
      userId.scrollIntoView();
    },
  };
}

async function renderUsage(area, perms) {
  const budgets = perms.has("manage_budgets") ? budgetPart() : null;
  if (perms.has("view_audit_logs")) {
    const from = h("input", { type: "date", name: "from" });
    const to = h("input", { type: "date", name: "to" });
    const user = h("input", { name: "user_id", autocomplete: "off" });
    const out = h("div", {});
    const form = h(
      "form",
      { class: "stack" },
      h("div", { class: "filters" }, field("From", from, "First UTC day; default: the 1st of this month"), field("To", to, "Last UTC day; default: today"), field("User", user, "Optional")),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Show usage")),
    );
    async function load() {
      const p = new URLSearchParams();
      if (from.value) p.set("from", from.value);
      if (to.value) p.set("to", to.value);
      if (user.value.trim()) p.set("user_id", user.value.trim());
      try {
        const u = await api(`/api/v1/admin/usage?${p}`);
        const rows = u.usage.map((r) =>
          h(
            "tr",
            {},
            h(
              "td",
              {},
              r.user_id,
              budgets
                ? [" ", h("button", { type: "button", class: "linklike", "aria-label": `Budget of ${r.user_id}`, onclick: () => budgets.open(r.user_id) }, "budget")]
                : null,
            ),
            h("td", {}, r.model),
            h("td", {}, num(r.total_tokens)),
            h("td", {}, `${Number(r.cost).toFixed(4)} ${u.currency}`),
          ),
        );
        clear(out).append(
          h("p", {}, `${u.first_day} to ${u.last_day}: ${num(u.total_tokens)} tokens, ${Number(u.total_cost).toFixed(4)} ${u.currency}.`),
          rows.length ? table("Usage per user and model", ["User", "Model", "Tokens", "Cost"], rows) : h("p", { class: "muted" }, "No usage in this range."),
        );
      } catch (err) {
        sayError(err);
      }
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      load();
    });
    area.append(part("Usage per user", form, out));
    await load();
  }
  if (budgets) area.append(budgets.el);
}

// ---------------------------------------------------------------- failed operations
async function renderFailed(area) {
  const status = h(
    "select",
    { name: "status" },
    ["open", "retried", "resolved"].map((s) => h("option", { value: s }, s)),
  );
  const out = h("div", {});
  let latest = 0; // only the latest load renders (a retry's reload may finish after a new filter's)
  async function load() {
    const mine = ++latest;
    try {
      const { failed_operations: ops } = await api(`/api/v1/admin/failed-operations?status=${encodeURIComponent(status.value)}`);
      if (mine !== latest) return;
      const rows = ops.map((op) => {
        const retry = h("button", { type: "button", "aria-label": `Retry ${op.kind} ${op.resource_id}` }, "Retry");
        retry.addEventListener("click", async () => {
          retry.disabled = true;
          try {
            await api(`/api/v1/admin/failed-operations/${encodeURIComponent(op.id)}/retry`, { method: "POST" });
            say(`Retrying ${op.kind} ${op.resource_id}.`, "ok");
            await load();
          } catch (err) {
            sayError(err);
            retry.disabled = false;
          }
        });
        return h(
          "tr",
          { dataset: { op: op.id } },
          h("td", {}, op.kind, h("br"), h("code", { class: "muted" }, op.resource_id)),
          h("td", {}, h("code", {}, op.error_code), h("br"), op.error_message),
          h("td", {}, String(op.retry_count)),
          h("td", {}, when(op.updated_at)),
          h("td", { class: "actions" }, op.status === "open" ? retry : op.status),
        );
      });
      clear(out).append(
        rows.length ? table(`Failed operations (${status.value})`, ["Operation", "Error", "Retries", "When", "Actions"], rows) : h("p", { class: "muted" }, `No ${status.value} failed operations.`),
      );
    } catch (err) {
      sayError(err);
    }
  }
  status.addEventListener("change", load);
  area.append(h("div", { class: "card" }, field("Status", status)), out);
  await load();
}

// ---------------------------------------------------------------- org knowledge bases
function kbCard(kb) {
  const titleId = nextId("kb");
  const input = h("input", { type: "file", multiple: true, name: "files" });
  const uploads = h("ul", { class: "uploads", "aria-label": `Uploads to ${kb.name}` });
  input.addEventListener("change", async () => {
    const files = [...input.files];
    input.value = "";
    await Promise.all(
      files.map(async (file) => {
        const progress = h("progress", { max: 100, value: 0, class: "progress", "aria-label": `Upload progress of ${file.name}` });
        const state = h("span", {}, " uploading");
        uploads.append(h("li", {}, `${file.name} `, progress, state));
        try {
          await uploadFile(kb.id, file, progress);
          state.textContent = " uploaded: indexing in the background";
        } catch (err) {
          state.textContent = ` failed: ${err.message}`;
          state.className = "error";
        }
      }),
    );
    say(`Published to ${kb.name}; indexing runs in the background.`, "ok");
  });
  return h(
    "article",
    { class: "card stack", "aria-labelledby": titleId },
    h("h3", { id: titleId }, kb.name),
    kb.description ? h("p", {}, kb.description) : null,
    kb.can_upload ? [field(`Publish to ${kb.name}`, input, "Files uploaded here are readable by everyone"), uploads] : null,
    h("p", {}, h("a", { href: `${root}/documents?kb=${encodeURIComponent(kb.id)}` }, "Open in Documents", h("span", { class: "sr-only" }, `: ${kb.name}`))),
  );
}

async function renderKnowledge(area) {
  const list = h("div", { class: "stack" });
  const name = h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const description = h("textarea", { name: "description", rows: 2, maxlength: 2000 });
  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "new-kb-title" },
    h("h3", { id: "new-kb-title" }, "Create an org knowledge base"),
    field("Name", name),
    field("Description", description),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Create knowledge base")),
  );
  async function reload() {
    const { knowledge_bases: kbs } = await api("/api/v1/knowledge-bases");
    const org = kbs.filter((k) => k.owner_type === "org");
    append(clear(list), [org.length ? org.map(kbCard) : h("p", { class: "muted" }, "No org knowledge bases yet.")]);
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const kb = await api("/api/v1/admin/knowledge-bases", {
        method: "POST",
        json: { name: name.value.trim(), description: description.value.trim() },
      });
      say(`Created the knowledge base ${kb.name}.`, "ok");
      form.reset();
      await reload();
    } catch (err) {
      sayError(err);
    }
  });
  area.append(form, list);
  await reload();
}

// ------------------------------------------------------------------------------ page
const SECTIONS = [
  { id: "tools", title: "Tools", allowed: (p) => p.has("manage_tools"), render: renderTools },
  { id: "audit", title: "Audit trail", allowed: (p) => p.has("view_audit_logs"), render: renderAudit },
  {
    id: "usage",
    title: "Usage and budgets",
    allowed: (p) => p.has("view_audit_logs") || p.has("manage_budgets"),
    render: renderUsage,
  },
  { id: "failed", title: "Failed operations", allowed: (p) => p.has("manage_org_kb"), render: renderFailed },
  { id: "knowledge", title: "Knowledge bases", allowed: (p) => p.has("manage_org_kb"), render: renderKnowledge },
];

export async function render(view, me) {
  const perms = new Set(me.permissions);
  const visible = SECTIONS.filter((s) => s.allowed(perms));
  if (!me.permissions.some((p) => ADMIN_PERMISSIONS.includes(p)) || !visible.length) {
    view.append(h("p", {}, "You do not have access to the admin pages."));
    return;
  }
  const wanted = new URLSearchParams(location.search).get("section");
  const current = visible.find((s) => s.id === wanted) || visible[0];
  document.title = `${current.title} · Admin · Keel`;
  const body = h("div", { class: "stack" });
  view.append(
    h(
      "nav",
      { class: "subnav", "aria-label": "Admin sections" },
      h(
        "ul",
        {},
        visible.map((s) =>
          h("li", {}, h("a", { href: `${root}/admin?section=${s.id}`, "aria-current": s.id === current.id ? "page" : null }, s.title)),
        ),
      ),
    ),
    h("section", { "aria-labelledby": "section-title" }, h("h2", { id: "section-title" }, current.title), body),
  );
  await current.render(body, perms);
}
