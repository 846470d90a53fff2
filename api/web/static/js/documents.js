// Documents: browse every readable knowledge base, upload several files (per-file progress,
// XHR), status processing → ready / failed (with the reason) without a reload, delete, share.
import { api, headersFor, root } from "./api.js";
import { clear, field, h, say, sayError, table } from "./dom.js";

const POLL_MS = 1500;

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function ids(text) {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** POST one file with XHR (fetch has no upload progress). */
export function uploadFile(kbId, file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${root}/api/v1/knowledge-bases/${encodeURIComponent(kbId)}/documents`);
    for (const [k, v] of headersFor("POST")) xhr.setRequestHeader(k, v);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        progress.value = 100;
        resolve(xhr.response);
      } else {
        reject(new Error(xhr.response?.error?.message || `HTTP ${xhr.status}`));
      }
    });
    xhr.addEventListener("error", () => reject(new Error("the upload failed (connection lost)")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

export async function render(view) {
  const params = new URLSearchParams(location.search);
  const { knowledge_bases: kbs } = await api("/api/v1/knowledge-bases");
  const wantedDoc = params.get("doc");
  let kb = kbs.find((k) => k.id === params.get("kb")) || kbs[0];
  if (wantedDoc && !params.get("kb")) {
    for (const k of kbs) {
      try {
        await api(`/api/v1/knowledge-bases/${encodeURIComponent(k.id)}/documents/${encodeURIComponent(wantedDoc)}`);
        kb = k;
        break;
      } catch {
        /* not in this one */
      }
    }
  }
  if (!kb) {
    view.append(h("p", {}, "You may not read any knowledge base."));
    return;
  }
  const select = h(
    "select",
    { name: "kb" },
    kbs.map((k) => h("option", { value: k.id, selected: k.id === kb.id }, k.name)),
  );
  const uploadArea = h("div", { class: "stack" });
  const uploads = h("ul", { class: "uploads", "aria-label": "Uploads" });
  const docsArea = h("div", {});
  view.append(
    h("div", { class: "card stack" }, field("Knowledge base", select), h("p", { class: "hint" }, kb.description || "")),
    uploadArea,
    docsArea,
  );
  select.addEventListener("change", () => {
    location.assign(`${root}/documents?kb=${encodeURIComponent(select.value)}`);
  });

  let timer = 0;
  async function refresh() {
    clearTimeout(timer);
    try {
      const { documents } = await api(`/api/v1/knowledge-bases/${encodeURIComponent(kb.id)}/documents`);
      renderDocs(documents);
      if (documents.some((d) => d.status === "processing")) timer = setTimeout(refresh, POLL_MS);
    } catch (err) {
      sayError(err);
    }
  }

  if (kb.can_upload) {
    const input = h("input", { type: "file", name: "files", multiple: true });
    uploadArea.append(h("div", { class: "card stack" }, field("Upload", input, "One or more files: PDF, DOCX, HTML, text, markdown"), uploads));
    input.addEventListener("change", async () => {
      const files = [...input.files];
      input.value = "";
      say(`Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`);
      await Promise.all(
        files.map(async (file) => {
          const progress = h("progress", { max: 100, value: 0, class: "progress", "aria-label": `Upload progress of ${file.name}` });
          const state = h("span", {}, " uploading");
          uploads.append(h("li", {}, `${file.name} `, progress, state));
          try {
            await uploadFile(kb.id, file, progress);
            state.textContent = " uploaded";
          } catch (err) {
            state.textContent = ` failed: ${err.message}`;
            state.className = "error";
          }
        }),
      );
      say("Upload finished; indexing runs in the background.", "ok");
      await refresh();
    });
  } else {
    uploadArea.append(h("p", { class: "muted" }, "You may read this knowledge base but not upload to it."));
  }

  function shareControls(doc) {
    const users = h("input", { name: "users", autocomplete: "off" });
    const groups = h("input", { name: "groups", autocomplete: "off" });
    async function change(method) {
      const body = { user_ids: ids(users.value), group_ids: ids(groups.value) };
      if (!body.user_ids.length && !body.group_ids.length) {
        say("Name at least one user or group.", "error");
        users.focus();
        return;
      }
      try {
        const path = `/api/v1/knowledge-bases/${encodeURIComponent(kb.id)}/documents/${encodeURIComponent(doc.id)}/shares`;
        await api(path, { method, json: body });
        say(`${method === "POST" ? "Shared" : "Unshared"} ${doc.title}.`, "ok");
        await refresh();
      } catch (err) {
        sayError(err);
      }
    }
    return h(
      "details",
      {},
      h("summary", {}, "Sharing", h("span", { class: "sr-only" }, ` of ${doc.title}`)),
      h(
        "div",
        { class: "stack" },
        h("p", {}, doc.shared_with.length ? `Shared with: ${doc.shared_with.join(", ")}` : "Not shared."),
        field("Users", users, "User ids, separated by commas or spaces"),
        field("Groups", groups, "Group ids"),
        h(
          "div",
          { class: "row" },
          h("button", { type: "button", onclick: () => change("POST") }, "Share"),
          h("button", { type: "button", onclick: () => change("DELETE") }, "Unshare"),
        ),
      ),
    );
  }

  function renderDocs(documents) {
    const open = new Set([...docsArea.querySelectorAll("details[open]")].map((d) => d.dataset.doc));
    const rows = documents.map((doc) => {
      const status = h("span", { class: `badge ${doc.status}` }, doc.status);
      const reason = doc.status === "failed" ? h("p", { class: "error" }, `${doc.error_code || "failed"}: ${doc.error_message || ""}`) : null;
      const actions = [];
      if (kb.can_upload) {
        const share = shareControls(doc);
        share.dataset.doc = doc.id;
        if (open.has(doc.id)) share.open = true;
        actions.push(
          share,
          h(
            "button",
            {
              type: "button",
              class: "danger",
              "aria-label": `Delete ${doc.title}`,
              onclick: async () => {
                try {
                  await api(`/api/v1/knowledge-bases/${encodeURIComponent(kb.id)}/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
                  say(`Deleted ${doc.title}.`, "ok");
                  await refresh();
                } catch (err) {
                  sayError(err);
                }
              },
            },
            "Delete",
          ),
        );
      }
      return h(
        "tr",
        { dataset: { doc: doc.id }, class: doc.id === wantedDoc ? "highlight" : null, id: `doc-${doc.id}` },
        h("td", {}, doc.title, doc.filename !== doc.title ? [h("br"), h("span", { class: "muted" }, doc.filename)] : null),
        h("td", {}, status, reason),
        h("td", { class: "col-size" }, size(doc.size_bytes)),
        h("td", {}, actions),
      );
    });
    clear(docsArea).append(
      documents.length
        ? table(`Documents in ${kb.name}`, ["Document", "Status", "Size", "Actions"], rows)
        : h("p", { class: "muted" }, "No documents yet."),
    );
  }

  await refresh();
  if (wantedDoc) document.getElementById(`doc-${wantedDoc}`)?.scrollIntoView();
}
