// The API reference: /openapi.json rendered in the page, offline.
"use strict";

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

// A schema as a short type: `TableBody`, `string[]`, `integer | null`.
function type(s) {
  if (!s) return "";
  if (s.$ref) return s.$ref.split("/").pop();
  if (s.oneOf || s.anyOf) return (s.oneOf || s.anyOf).map(type).join(" | ");
  if (s.type === "array") return type(s.items) + "[]";
  if (s.enum) return s.enum.map((e) => JSON.stringify(e)).join(" | ");
  return Array.isArray(s.type) ? s.type.join(" | ") : s.type || "object";
}

function operation(path, method, op) {
  const params = (op.parameters || []).map((p) =>
    h("tr", {}, h("td", {}, h("code", {}, p.name)), h("td", {}, p.in), h("td", {}, type(p.schema)),
      h("td", {}, p.required ? "required" : ""), h("td", {}, p.description || "")));
  const body = op.requestBody && op.requestBody.content && Object.values(op.requestBody.content)[0];
  const responses = Object.entries(op.responses || {}).map(([code, r]) => {
    const content = r.content && Object.values(r.content)[0];
    return h("tr", {}, h("td", {}, code), h("td", {}, r.description || ""), h("td", {}, content ? type(content.schema) : ""));
  });
  return h("details", { class: "op", id: op.operationId || null },
    h("summary", {}, h("span", { class: "method " + method }, method.toUpperCase()), h("span", { class: "path" }, path),
      " ", h("span", { class: "muted" }, op.summary || "")),
    op.description ? h("p", {}, op.description) : null,
    params.length ? h("table", {}, h("tr", {}, ["Parameter", "In", "Type", "", "Description"].map((x) => h("th", {}, x))), params) : null,
    body ? h("p", {}, "Body: ", h("code", {}, type(body.schema))) : null,
    h("table", {}, h("tr", {}, ["Status", "Meaning", "Body"].map((x) => h("th", {}, x))), responses));
}

function schema(name, s) {
  const required = new Set(s.required || []);
  const props = Object.entries(s.properties || {}).map(([k, p]) =>
    h("tr", {}, h("td", {}, h("code", {}, k)), h("td", {}, type(p)), h("td", {}, required.has(k) ? "required" : ""),
      h("td", {}, p.description || "")));
  return h("details", { class: "op", id: "schema-" + name },
    h("summary", {}, h("strong", {}, name), " ", h("span", { class: "muted" }, s.properties ? "" : type(s))),
    s.description ? h("p", {}, s.description) : null,
    props.length ? h("table", {}, h("tr", {}, ["Field", "Type", "", "Description"].map((x) => h("th", {}, x))), props) : null);
}

fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  const byTag = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!op || typeof op !== "object" || !op.responses) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(path, method, op));
    }
  }
  const main = document.getElementById("reference");
  main.replaceChildren(h("div", {},
    h("h2", {}, `${spec.info.title} ${spec.info.version}`),
    spec.info.description ? h("p", {}, spec.info.description) : null,
    [...byTag].map(([tag, ops]) => [h("h3", {}, tag), ops]),
    h("h3", {}, "Schemas"),
    Object.entries((spec.components && spec.components.schemas) || {}).map(([n, s]) => schema(n, s)),
  ));
}).catch((e) => {
  document.getElementById("reference").replaceChildren(h("p", { class: "error" }, "Cannot read /openapi.json: " + e));
});
