// charforge studio: the cast, one character's CG driven by emotion sliders, its history, music and sprites.
// Plain JS against the HTTP API; nothing is loaded from outside this server.
"use strict";

const BASIS = ["joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation"];
const $ = (id) => document.getElementById(id);
let current = null;      // name of the character shown
let requestSeq = 0;      // only the newest slider request may change the picture
let debounce = null;

function headers(extra = {}) {
  const key = sessionStorage.getItem("charforge-key");
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const init = { ...options, headers: headers(options.body ? { "Content-Type": "application/json" } : {}) };
  const res = await fetch(path, init);
  if (res.status === 401) {
    $("key-form").hidden = false;
    throw new Error("this server needs an API key");
  }
  return res;
}

async function json(path, options) {
  const res = await api(path, options);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
  return { status: res.status, data };
}

function say(text) { $("status").textContent = text; }

// Follow a job's server-sent events (read with fetch, so the API key header goes along).
async function followJob(id, onUpdate) {
  const res = await api(`/jobs/${id}/events`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
      if (!data) continue;
      const job = JSON.parse(data);
      onUpdate(job);
      if (job.status !== "queued" && job.status !== "running") return job;
    }
  }
  return (await json(`/jobs/${id}`)).data;
}

async function blobUrl(url) {
  const res = await api(url);
  if (!res.ok) throw new Error(`could not load ${url}`);
  return URL.createObjectURL(await res.blob());
}

// An answer of a verb: the asset at once (200), or a job to follow (202).
async function assetOf(answer, onUpdate) {
  if (answer.asset) return answer.asset;
  const job = await followJob(answer.job.id, onUpdate);
  if (job.status !== "done") throw new Error(job.error || `job ${job.id} ${job.status}`);
  return job.result.asset;
}

// cast --------------------------------------------------------------------------------------------

async function showCast() {
  current = null;
  $("character-view").hidden = true;
  $("cast-view").hidden = false;
  const { data } = await json("/characters");
  const list = $("cast");
  list.replaceChildren();
  for (const c of data.characters) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#/c/${c.name}`;
    a.dataset.name = c.name;
    const img = document.createElement("img");
    img.alt = c.display_name;
    const caption = document.createElement("div");
    caption.textContent = `${c.display_name} · ${c.state.dominant}`;
    a.append(img, caption);
    li.append(a);
    list.append(li);
    json(`/characters/${c.name}/assets?kind=cg`).then(async ({ data: assets }) => {
      const pick = assets.find((x) => x.dominant === "neutral") || assets[0];
      if (pick) img.src = await blobUrl(pick.url);
    }).catch(() => {});
  }
  say(`${data.characters.length} characters`);
}

// one character ------------------------------------------------------------------------------------

function sliderState() {
  const scale = parseFloat($("intensity").value);
  const emotions = {};
  for (const name of BASIS) {
    const v = parseFloat($(`emo-${name}`).value) * scale;
    if (v > 0) emotions[name] = Math.round(v * 1000) / 1000;
  }
  return emotions;
}

function buildSliders(state) {
  const box = $("emotion-sliders");
  box.replaceChildren();
  for (const name of BASIS) {
    const label = document.createElement("label");
    label.className = "slider";
    label.textContent = name;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", id: `emo-${name}`, name, min: 0, max: 1, step: 0.05 });
    input.value = state[name] || 0;
    const out = document.createElement("output");
    out.textContent = input.value;
    input.addEventListener("input", () => { out.textContent = input.value; scheduleFeel(); });
    label.append(input, out);
    box.append(label);
  }
}

function showProgress(job) {
  const bar = $("progress");
  bar.hidden = false;
  bar.value = job.progress;
  $("progress-text").textContent = `${job.status} (job ${job.id})`;
}

async function showAsset(asset, emotions) {
  const img = $("cg");
  img.src = await blobUrl(asset.url);
  img.dataset.url = asset.url;
  img.dataset.sha256 = asset.sha256;
  img.dataset.state = JSON.stringify(emotions);
  $("cg-state").textContent = Object.entries(emotions).map(([k, v]) => `${k}=${v}`).join(" ") || "neutral";
  $("progress").hidden = true;
  $("progress-text").textContent = "";
}

function scheduleFeel() {
  clearTimeout(debounce);
  debounce = setTimeout(feel, 300);
}

async function feel() {
  const seq = ++requestSeq;
  const emotions = sliderState();
  $("cg").dataset.pending = JSON.stringify(emotions);
  try {
    const { data } = await json(`/characters/${current}/emotion`, {
      method: "POST", body: JSON.stringify({ emotions, reason: "studio sliders" }),
    });
    const asset = await assetOf(data, (job) => { if (seq === requestSeq) showProgress(job); });
    if (seq === requestSeq) await showAsset(asset, emotions);
    refreshSide();
  } catch (err) {
    say(err.message);
  }
}

async function refreshSide() {
  const [{ data: history }, { data: sprites }] = await Promise.all([
    json(`/characters/${current}/history?limit=20`), json(`/characters/${current}/assets?kind=cg`),
  ]);
  const ol = $("history");
  ol.replaceChildren(...history.reverse().map((e) => {
    const li = document.createElement("li");
    const text = Object.entries(e.emotions).map(([k, v]) => `${k}=${v}`).join(" ") || "neutral";
    li.textContent = `${text} (${e.source}, ${new Date(e.at).toLocaleTimeString()})`;
    return li;
  }));
  const ul = $("sprites");
  ul.replaceChildren(...sprites.map((s) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.alt = s.dominant || "sprite";
    img.title = s.state ? JSON.stringify(s.state) : "";
    img.dataset.sha256 = s.sha256;
    blobUrl(s.url).then((u) => { img.src = u; }).catch(() => {});
    const caption = document.createElement("div");
    caption.textContent = s.dominant || "";
    li.append(img, caption);
    return li;
  }));
}

async function showCharacter(name) {
  current = name;
  $("cast-view").hidden = true;
  $("character-view").hidden = false;
  const { data } = await json(`/characters/${name}?history=0`);
  $("char-name").textContent = data.display_name;
  $("char-prompt").textContent = data.prompt;
  buildSliders(data.state.emotions);
  $("intensity").value = 1;
  const emotions = data.state.emotions;
  const { data: answer } = await json(`/characters/${name}/render`, {
    method: "POST", body: JSON.stringify({ state: emotions }),
  });
  const seq = requestSeq;
  const asset = await assetOf(answer, showProgress);
  if (seq === requestSeq) await showAsset(asset, emotions);
  refreshSide();
  say("");
}

async function playBgm() {
  const emotions = sliderState();
  say("composing music...");
  try {
    const { data } = await json(`/characters/${current}/bgm`, {
      method: "POST", body: JSON.stringify({ state: emotions, seconds: 10 }),
    });
    const asset = await assetOf(data, (job) => say(`music: ${job.status}`));
    const audio = $("bgm");
    audio.src = await blobUrl(asset.url);
    audio.dataset.sha256 = asset.sha256;
    audio.hidden = false;
    await audio.play().catch(() => {});
    say("");
  } catch (err) {
    say(err.message);
  }
}

function route() {
  const match = location.hash.match(/^#\/c\/([a-z0-9][a-z0-9_-]*)$/);
  (match ? showCharacter(match[1]) : showCast()).catch((err) => say(err.message));
}

$("intensity").addEventListener("input", () => {
  $("intensity").nextElementSibling.textContent = $("intensity").value;
  scheduleFeel();
});
$("play-bgm").addEventListener("click", playBgm);
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("charforge-key", $("key").value);
  $("key-form").hidden = true;
  route();
});
window.addEventListener("hashchange", route);
route();
