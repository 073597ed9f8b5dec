"use strict";
// rmb-judge view: the page asks the server for one page of the filtered list and one record at
// a time, never for everything. Every element is built with textContent: the records' texts
// are data (harmful prompts, HTML, code), never markup. The URL holds the whole state: the
// record in the path (/r/<category_path>/<uid>), the filters in the query string.

const FILTERS = ["text", "run", "disagree", "section", "scenario", "outcome", "position", "turns", "model", "sort"];
const SELECTS = ["section", "scenario", "outcome", "position", "turns", "model", "sort"];
const PAGE = 50;
const NARROW = window.matchMedia("(max-width: 900px)");  // as app.css lays the page out in one column
const state = { meta: null, query: {}, offset: 0, total: 0, items: [], record: null, listCall: 0, recordCall: 0 };
const $ = (id) => document.getElementById(id);
const number = (n) => Number(n).toLocaleString("en-US");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${response.status}: ${(await response.text()).trim()}`);
  return response.json();
}

// ------------------------------------------------------------------ the URL

function readLocation() {
  const params = new URLSearchParams(location.search);
  const query = {};
  for (const name of FILTERS) {
    const value = params.get(name);
    if (value) query[name] = value;
  }
  let record = null;
  if (location.pathname.startsWith("/r/")) {
    const parts = location.pathname.slice(3).split("/").map(decodeURIComponent);
    const uid = parts.pop();
    record = `${parts.join("/")}::${uid}`;
  }
  return { query, offset: Math.max(0, parseInt(params.get("offset") || "0", 10) || 0), record };
}

function recordPath(id) {
  const cut = id.indexOf("::");
  const scenario = id.slice(0, cut);
  return `/r/${scenario.split("/").map(encodeURIComponent).join("/")}/${encodeURIComponent(id.slice(cut + 2))}`;
}

function pageURL(record, query, offset) {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (query[name]) params.set(name, query[name]);
  if (offset) params.set("offset", offset);
  const search = params.toString();
  return (record ? recordPath(record) : "/") + (search ? `?${search}` : "");
}

function apiQuery(extra) {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (state.query[name]) params.set(name, state.query[name]);
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  return params.toString();
}

// ------------------------------------------------------------------ runs, notes, filters

function runName(number) {
  const run = state.meta.runs[number];
  return `${number + 1} · ${run.judge}${run.label ? ` · ${run.label}` : ""}`;
}

function renderMeta() {
  const meta = state.meta;
  $("runs").replaceChildren(...meta.runs.map((run) => el("li", { class: `run r${run.number % 8}`, title: run.path },
    el("span", { class: "swatch" }), el("a", { href: pageURL(null, state.query, state.offset), class: "to-overview",
      onclick: (event) => {
        if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        openOverview(true);
      } }, `${runName(run.number)} (${number(run.records)} records)`))));
  const byText = new Map();  // a note several runs share is said once, naming them
  for (const run of meta.runs) for (const text of run.notes) byText.set(text, [...(byText.get(text) || []), run.number + 1]);
  $("notes").replaceChildren(...meta.notes.map((text) => el("p", { class: "note", text })),
    ...[...byText].map(([text, runs]) => el("p", { class: "note" },
      meta.runs.length > 1 ? el("b", { text: `${runs.length > 1 ? "Runs" : "Run"} ${runs.join(", ")}: ` }) : null, text)));
  const filters = meta.filters;
  fill("section", filters.section, "all");
  const scenario = $("f-scenario");
  const groups = new Map();
  for (const item of filters.scenario) {
    const title = (filters.section.find((s) => s.value === item.section) || { title: "other" }).title;
    if (!groups.has(title)) groups.set(title, el("optgroup", { label: title }));
    groups.get(title).append(el("option", { value: item.value, text: `${item.title} (${number(item.count)})` }));
  }
  scenario.replaceChildren(el("option", { value: "", text: "all" }), ...groups.values());
  fill("turns", filters.turns, "all");
  fill("model", filters.model, "all");
  $("f-sort").replaceChildren(...filters.sort.map((s) => el("option", { value: s.value, text: s.title })));
  if (meta.runs.length > 1) {
    document.querySelector(".multi-run").hidden = false;
    $("f-run").replaceChildren(...meta.runs.map((run) => el("option", { value: run.number, text: `${run.number + 1} · ${run.judge}`,
      title: runName(run.number) })));
    $("disagree-label").textContent = `only where the runs disagree (${number(meta.disagreements)})`;
  }
  fillRun();
}

function fill(name, items, all) {
  $(`f-${name}`).replaceChildren(el("option", { value: "", text: all }),
    ...items.map((item) => el("option", { value: item.value, text: `${item.title} (${number(item.count)})` })));
}

function fillRun() {
  const run = state.meta.filters.per_run[parseInt(state.query.run || "0", 10)] || state.meta.filters.per_run[0];
  fill("outcome", run.outcome, "all");
  fill("position", run.position, "anywhere");
}

function setForm() {
  $("search").value = state.query.text || "";
  if (state.meta.runs.length > 1) {
    $("f-run").value = state.query.run || "0";
    $("f-disagree").checked = state.query.disagree === "1";
  }
  fillRun();
  for (const name of SELECTS) {
    const select = $(`f-${name}`);
    select.value = state.query[name] || "";
    if (select.value !== (state.query[name] || "")) select.value = "";  // a value these runs do not have
  }
}

function readForm() {
  const query = {};
  const text = $("search").value.trim();
  if (text) query.text = text;
  if (state.meta.runs.length > 1) {
    if ($("f-run").value !== "0") query.run = $("f-run").value;
    if ($("f-disagree").checked) query.disagree = "1";
  }
  for (const name of SELECTS) if ($(`f-${name}`).value) query[name] = $(`f-${name}`).value;
  return query;
}

function filtersChanged() {
  const before = state.query.run || "0";
  state.query = readForm();
  if ((state.query.run || "0") !== before) {  // the outcome and position choices are the run's
    fillRun();
    delete state.query.outcome;
    delete state.query.position;
  }
  state.offset = 0;
  history.replaceState(null, "", pageURL(state.record, state.query, 0));
  loadList();
}

// ------------------------------------------------------------------ the list

async function loadList() {
  const call = ++state.listCall;
  $("count").textContent = "Loading…";
  try {
    const page = await getJSON(`/api/records?${apiQuery({ offset: state.offset, limit: PAGE })}`);
    if (call === state.listCall) renderList(page);
  } catch (error) {
    if (call === state.listCall) $("count").textContent = `Could not load the records (${error.message}).`;
  }
}

function badges(outcomes) {
  const several = state.meta.runs.length > 1;
  return outcomes.map((outcome, run) => outcome === null ? null : el("span", {
    class: `badge o-${outcome}`, title: `run ${runName(run)}: ${outcome}`, text: several ? `${run + 1} ${outcome}` : outcome,
  }));
}

function renderList(page) {
  state.total = page.total;
  state.offset = page.offset;
  state.items = page.items;
  const all = state.meta.records;
  $("count").textContent = page.total === all ? `${number(all)} records` : `${number(page.total)} of ${number(all)} records`;
  $("list").replaceChildren(...page.items.map((item) => el("li", { class: item.id === state.record ? "item current" : "item" },
    el("a", { href: pageURL(item.id, state.query, state.offset), "data-id": item.id, onclick: (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      openRecord(item.id, true);
    } },
    el("span", { class: "item-head" }, el("span", { class: "subset", text: item.subset }),
      el("span", { class: "uid", text: `${sectionTitle(item.section)} #${item.uid}` }), ...badges(item.outcomes)),
    el("span", { class: "preview", text: item.preview || "(the conversation is not available)" }),
    el("span", { class: "lengths", text: lengthsText(item) })))));
  const pages = Math.ceil(page.total / PAGE);
  $("pager").hidden = pages <= 1;
  $("page-info").textContent = `page ${number(Math.floor(page.offset / PAGE) + 1)} of ${number(pages)}`;
  $("prev").disabled = page.offset === 0;
  $("next").disabled = page.offset + PAGE >= page.total;
}

function sectionTitle(key) {
  return (state.meta.filters.section.find((s) => s.value === key) || { title: "" }).title;
}

function lengthsText(item) {
  const parts = item.lengths.length ? item.labels.map((label, i) => `${label} ${number(item.lengths[i])}`) : [];
  const text = parts.length ? `${parts.join(" · ")} chars` : "";
  return item.turns > 1 ? `${text} · ${item.turns} user turns` : text;
}

function turnPage(step) {
  state.offset = Math.max(0, state.offset + step * PAGE);
  history.replaceState(null, "", pageURL(state.record, state.query, state.offset));
  loadList();
  $("browse").scrollTop = 0;
}

// ------------------------------------------------------------------ one record

async function openRecord(id, push) {
  state.record = id;
  if (push) history.pushState(null, "", pageURL(id, state.query, state.offset));
  for (const link of document.querySelectorAll("#list a")) {
    link.parentElement.classList.toggle("current", link.dataset.id === id);
  }
  const call = ++state.recordCall;
  $("record").replaceChildren(el("p", { class: "hint", text: "Loading…" }));
  if (NARROW.matches) $("record").scrollIntoView();  // one column: the record is below the list
  try {
    const record = await getJSON(`/api/record?id=${encodeURIComponent(id)}`);
    if (call === state.recordCall) renderRecord(record);
  } catch (error) {
    if (call === state.recordCall) {
      $("record").replaceChildren(el("p", { class: "note", text: `No record ${id} in these runs (${error.message}).` }));
    }
  }
}

function renderRecord(record) {
  const meta = state.meta;
  const where = [record.section_title, record.scenario, record.file].filter(Boolean).join(" · ");
  const judged = record.runs;
  const parts = [
    el("h2", {}, record.subset, " ", el("span", { class: "uid", text: `#${record.uid}` })),
    el("p", { class: "where", text: where }),
    ...record.notes.map((text) => el("p", { class: "note", text })),
    el("table", { class: "outcomes" }, el("tbody", {}, ...judged.map((run) => el("tr", { class: `r${run.number % 8}` },
      el("td", {}, el("span", { class: "swatch" }), el("span", { class: "run-name", text: runName(run.number) })),
      el("td", {}, el("span", { class: `badge o-${run.outcome}`, text: run.outcome })),
      el("td", { class: "num", text: run.score === null || run.score === undefined ? "" : `score ${run.score}` }))))),
  ];
  if (record.conversation) {
    parts.push(el("h3", { text: "Conversation" }),
      el("div", { class: "conversation" }, ...record.conversation.map((m) => el("div", { class: `msg ${m.role}` },
        el("div", { class: "role", text: m.role }), el("div", { class: "text", text: m.content })))));
    parts.push(el("h3", { text: "Answers" }),
      el("div", { class: "answers" }, ...record.answers.map((a, i) => el("section", { class: i === 0 ? "answer preferred" : "answer" },
        el("h4", {}, el("span", { class: "label", text: a.label }), " ", el("span", { class: "model", text: a.model || "model not recorded" }),
          el("span", { class: "length", text: `${number(a.length)} chars` })),
        el("div", { class: "text", text: a.text })))));
  }
  parts.push(el("h3", { text: judged.length > 1 ? "What each judge said" : "What the judge said" }),
    el("div", { class: judged.length > 1 ? "judgments side-by-side" : "judgments" }, ...judged.map((run) => el("section",
      { class: `judgment r${run.number % 8}` },
      el("h4", {}, el("span", { class: "swatch" }), el("span", { class: "run-name", text: runName(run.number) }),
        el("span", { class: `badge o-${run.outcome}`, text: run.outcome })),
      ...run.comparisons.map((c) => comparison(c, meta.runs[run.number]))))));
  $("record").replaceChildren(...parts);
  $("record").scrollTop = 0;
  document.title = `${record.subset} #${record.uid} · rmb-judge view`;
}

function comparison(c, run) {
  return el("div", { class: "comparison" },
    el("h5", {}, c.title, " ", el("span", { class: `badge o-${c.outcome}`, text: c.outcome })),
    ...c.presentations.map((p) => presentation(p, run)));
}

function verdictText(p, jury) {
  if (p.error) return `request failed: ${p.error}`;
  if (p.refused) return "refused";
  if (p.verdict === "A") return jury ? `the ${p.shown[0]} answer` : `A, the ${p.shown[0]} answer`;
  if (p.verdict === "B") return jury ? `the ${p.shown[1]} answer` : `B, the ${p.shown[1]} answer`;
  if (p.verdict === "tie") return "tie";
  return jury ? "none: no member gave a verdict" : "no verdict could be read";
}

function probabilities(p) {  // P(A), P(B), P(tie) at the verdict token, named by the answers shown as A and B
  if (!p.probs) return null;
  const share = (x) => Number(x).toFixed(3);
  return el("p", { class: "probs" }, "Verdict probabilities: ",
    el("span", { class: "prob", text: `${p.shown[0]} ${share(p.probs.A)}` }), " · ",
    el("span", { class: "prob", text: `${p.shown[1]} ${share(p.probs.B)}` }), " · ",
    el("span", { class: "prob", text: `tie ${share(p.probs.tie)}` }));
}

function memberVerdict(member, p) {  // a jury member's verdict relative to the label (the preferred answer shown as A)
  const said = { win: `the ${p.shown[0]} answer`, loss: `the ${p.shown[1]} answer`, tie: "tie" }[member.verdict];
  const where = member.run === null || member.run === undefined ? "" : ` (run ${member.run + 1}, beside)`;
  return el("li", {}, el("span", { class: "run-name", text: member.judge + where }), ": ",
    el("b", { text: said || "no verdict" }));
}

function presentation(p, run) {
  const jury = Boolean(run.jury);
  const flags = [p.cached && !jury ? "from the cache" : null, p.truncated ? "cut off at the token limit" : null].filter(Boolean);
  const parts = [
    jury ? null : el("p", { class: "shown", text: `Shown as A: ${p.shown[0]}, as B: ${p.shown[1]}` }),
    el("p", { class: "verdict" }, jury ? `The jury's verdict (${run.jury.rule || "majority"}): ` : "Verdict: ",
      el("b", { text: verdictText(p, jury) }), flags.length ? ` (${flags.join(", ")})` : ""),
    probabilities(p),
  ];
  if (jury) {
    parts.push(el("p", { class: "shown", text: "Its members' verdicts:" }),
      el("ul", { class: "members" }, ...(p.members || []).map((member) => memberVerdict(member, p))),
      el("p", { class: "hint", text: (p.members || []).every((m) => m.run !== null && m.run !== undefined)
        ? "A jury sends no prompt: its members' prompts and reasoning are in their columns."
        : "A jury sends no prompt: its verdict comes from its members' own runs, where their prompts and reasoning "
          + "are (give their run folders to view beside it to read them)." }));
    return el("div", { class: "presentation" }, ...parts);
  }
  parts.push(...raw(p));
  if (p.votes) parts.push(el("p", { class: "votes", text: `Votes: ${p.votes.map((v) => v === null ? "unread" : v).join(", ")}` }));
  if (p.prompts.length) {
    parts.push(el("details", { class: "prompt" },
      el("summary", { text: p.prompts.length > 1 ? "Prompts the judge saw (one per answer)" : "Prompt the judge saw" }),
      ...p.prompts.flatMap((messages, i) => [
        p.prompts.length > 1 ? el("p", { class: "shown", text: `Answer ${"AB"[i]}` }) : null,
        ...messages.map((m) => el("div", { class: "msg" }, el("div", { class: "role", text: m.role }), el("pre", { text: m.content }))),
      ])));
  } else if (!run.template) {
    parts.push(el("p", { class: "hint", text: "No prompt: a reward model scores each answer on its own." }));
  }
  return el("div", { class: "presentation" }, ...parts);
}

function raw(p) {
  const value = p.raw;
  if (value === null || value === undefined) return [];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === "number")) {
    return [el("p", { class: "rewards", text: `Rewards: ${p.shown[0]} ${value[0]}, ${p.shown[1]} ${value[1]}` })];
  }
  const one = (text, title) => [title ? el("p", { class: "shown", text: title }) : null, el("pre", { class: "raw", text: String(text) })];
  if (Array.isArray(value)) return value.flatMap((v, i) => typeof v === "object" && v !== null
    ? Object.entries(v).flatMap(([side, text]) => one(text, `Vote ${i + 1}, answer ${side}`)) : one(v, `Vote ${i + 1}`));
  if (typeof value === "object") return Object.entries(value).flatMap(([side, text]) => one(text, `Rating of answer ${side}`));
  return one(value, "Judge output");
}

// ------------------------------------------------------------------ the runs' scores and behaviour

function openOverview(push) {
  state.record = null;
  state.recordCall++;
  if (push) history.pushState(null, "", pageURL(null, state.query, state.offset));
  for (const link of document.querySelectorAll("#list a")) link.parentElement.classList.remove("current");
  renderOverview();
  document.title = "rmb-judge view";
}

function renderOverview() {
  const runs = state.meta.runs;
  $("record").replaceChildren(
    el("p", { class: "hint", text: "Choose a record from the list to see its conversation, answers, the prompt the judge saw and what it said." }),
    el("h2", { text: runs.length > 1 ? "The runs" : "The run" }),
    ...runs.map((run) => el("section", { class: `overview r${run.number % 8}`, id: `run-${run.number + 1}` },
      el("h3", {}, el("span", { class: "swatch" }), el("span", { class: "run-name", text: runName(run.number) })),
      el("p", { class: "where", text: `${run.path} · ${run.status.join(" · ")}` }),
      run.jury ? el("p", { class: "jury" }, `A jury (${run.jury.rule || "majority"}) of ${run.jury.members.length}: `,
        ...run.jury.members.flatMap((member, i) => [i ? ", " : "", el("span", { class: "run-name",
          text: member.judge + (member.run === null || member.run === undefined ? "" : ` (run ${member.run + 1})`) })])) : null,
      run.scores.length ? el("table", { class: "scores" }, el("tbody", {},
        el("tr", {}, ...run.scores.map((s) => el("th", { text: s.title }))),
        el("tr", {}, ...run.scores.map((s) => el("td", { class: "num", text: s.score }))))) : null,
      run.behaviour.length ? el("ul", { class: "behaviour" }, ...run.behaviour.map((line) => el("li", { text: line }))) : null,
      run.reliability ? el("figure", { class: "reliability" },
        el("img", { src: `/api/reliability.svg?run=${run.number}`, alt: `Reliability diagram of run ${run.number + 1}` }),
        el("figcaption", { text: "Comparisons binned by the judge's confidence (its probability for the answer it favours): "
          + "each point is a bin's mean confidence against how often the favoured answer was the label-preferred one. "
          + "A calibrated judge lies on the dashed diagonal." })) : null)));
}

// ------------------------------------------------------------------ start

function restore() {
  const where = readLocation();
  state.query = where.query;
  state.offset = where.offset;
  setForm();
  loadList();
  if (where.record) openRecord(where.record, false);
  else openOverview(false);
}

function step(direction) {
  const index = state.items.findIndex((item) => item.id === state.record);
  const next = state.items[index + direction];
  if (next) openRecord(next.id, true);
}

async function start() {
  const where = readLocation();
  state.query = where.query;
  state.offset = where.offset;
  state.record = where.record;
  const meta = getJSON("/api/meta");
  const list = getJSON(`/api/records?${apiQuery({ offset: state.offset, limit: PAGE })}`);
  state.meta = await meta;
  renderMeta();
  setForm();
  if (where.record) openRecord(where.record, false);
  else renderOverview();
  renderList(await list);
  let typing;
  $("filters").addEventListener("change", (event) => { if (event.target.id !== "search") filtersChanged(); });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(typing); filtersChanged(); });
  $("search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(filtersChanged, 250); });
  $("clear").addEventListener("click", () => {
    $("search").value = "";
    for (const name of SELECTS) $(`f-${name}`).value = "";
    $("f-disagree").checked = false;
    filtersChanged();
  });
  $("prev").addEventListener("click", () => turnPage(-1));
  $("next").addEventListener("click", () => turnPage(1));
  window.addEventListener("popstate", restore);
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") step(1);
    if (event.key === "k") step(-1);
  });
}

start().catch((error) => { $("count").textContent = `Could not start (${error.message}).`; });
