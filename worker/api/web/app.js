// vidx search page: plain JavaScript against the /v1 API; the key lives in localStorage.
// Images are fetched with the key and shown as blob: URLs (an <img src> cannot send a header).
"use strict";

const KEY_STORE = "vidx.apiKey";
const $ = (id) => document.getElementById(id);
const blobUrls = new Set();
let videoTimer = null;

function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + apiKey() }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      message = body.error + (body.detail && typeof body.detail === "string" ? ": " + body.detail : "");
    } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function showImage(img, url) {
  const response = await api(url);
  const objectUrl = URL.createObjectURL(await response.blob());
  blobUrls.add(objectUrl);
  img.src = objectUrl;
}

function releaseImages() {
  for (const url of blobUrls) URL.revokeObjectURL(url);
  blobUrls.clear();
}

function searchParams() {
  const params = new URLSearchParams();
  const threshold = $("threshold").value.trim();
  const label = $("label").value.trim();
  if (threshold !== "") params.set("threshold", threshold);
  params.set("limit", $("limit").value || "24");
  if (label) params.set("label", label);
  return params;
}

function card(result) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "result";
  button.dataset.sceneId = result.scene_id;
  const img = document.createElement("img");
  img.alt = result.video_name + " at " + result.timecode;
  img.loading = "lazy";
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = result.video_name;
  const line = document.createElement("div");
  line.textContent = result.timecode + (result.similarity !== undefined ? "  ·  " + result.similarity.toFixed(3) : "");
  const labels = document.createElement("div");
  labels.className = "labels";
  for (const l of result.labels || []) {
    const tag = document.createElement("span");
    tag.textContent = l.label;
    labels.appendChild(tag);
  }
  meta.append(name, line, labels);
  button.append(img, meta);
  button.addEventListener("click", () => openScene(result));
  showImage(img, result.frame_url).catch(() => img.classList.add("missing"));
  return button;
}

function showResults(container, results) {
  container.replaceChildren(...results.map(card));
}

async function runSearch(describe, request) {
  if (!apiKey()) { setStatus("Enter your API key first.", true); return; }
  setStatus("Searching…");
  try {
    releaseImages();
    const body = await (await request()).json();
    $("results-title").hidden = false;
    showResults($("results"), body.results);
    setStatus(body.results.length + " scene(s) for " + describe + " (similarity ≥ " + body.threshold + ")");
  } catch (error) {
    setStatus(error.message, true);
  }
}

function searchText(event) {
  event.preventDefault();
  const text = $("q").value.trim();
  if (!text) return;
  const params = searchParams();
  const payload = { text, limit: Number(params.get("limit")) };
  if (params.has("threshold")) payload.threshold = Number(params.get("threshold"));
  if (params.has("label")) payload.label = params.get("label");
  runSearch("“" + text + "”", () => api("/v1/search/text", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
  }));
}

function searchImage(file) {
  if (!file) return;
  runSearch("image " + file.name, () => api("/v1/search/image?" + searchParams(), {
    method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file,
  }));
}

async function openScene(result) {
  const detail = $("detail");
  detail.hidden = false;
  $("detail-title").textContent = result.video_name + " — scene " + result.index + " at " + result.timecode;
  const labels = (result.labels || []).map((l) => l.label).join(", ");
  $("detail-meta").textContent = (result.description || "") + (labels ? "  Labels: " + labels : "");
  $("similar").replaceChildren();
  $("sheet").hidden = true;
  $("sheet-note").textContent = "Loading…";
  detail.scrollIntoView({ behavior: "smooth" });
  showImage($("detail-frame"), result.frame_url).catch(() => {});
  try {
    const similar = await (await api(result.similar_url + "?limit=12&threshold=-1")).json();
    showResults($("similar"), similar.results);
  } catch (error) {
    $("similar").textContent = error.message;
  }
  try {
    await showImage($("sheet"), "/v1/videos/" + result.video_id + "/sheet.png");
    $("sheet").hidden = false;
    $("sheet-note").textContent = "";
  } catch (error) {
    $("sheet-note").textContent = error.message;
  }
}

function videoItem(video) {
  const li = document.createElement("li");
  const title = document.createElement("div");
  const state = document.createElement("strong");
  state.className = "status-" + video.status;
  state.textContent = video.status;
  const pct = video.progress == null ? "" : " " + Math.round(video.progress * 100) + "%";
  title.append(state, document.createTextNode(pct + "  " + video.name +
    (video.scene_count ? "  ·  " + video.scene_count + " scenes" : "")));
  li.appendChild(title);
  if (video.error) {
    const error = document.createElement("div");
    error.className = "status-failed";
    error.textContent = video.error;
    li.appendChild(error);
  }
  const bar = document.createElement("div");
  bar.className = "progress";
  const fill = document.createElement("div");
  fill.style.width = Math.round((video.progress || 0) * 100) + "%";
  bar.appendChild(fill);
  li.appendChild(bar);
  return li;
}

async function loadVideos() {
  if (!apiKey()) return;
  clearTimeout(videoTimer);
  try {
    const body = await (await api("/v1/videos?limit=50")).json();
    $("videos").replaceChildren(...body.videos.map(videoItem));
    if (body.videos.some((v) => v.status === "queued" || v.status === "running")) {
      videoTimer = setTimeout(loadVideos, 5000);
    }
  } catch (error) {
    $("videos").textContent = error.message;
  }
}

function showKeyState() {
  const has = Boolean(apiKey());
  $("key").hidden = has;
  $("key-save").hidden = has;
  $("key-forget").hidden = !has;
}

function init() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    localStorage.setItem(KEY_STORE, key);
    $("key").value = "";
    showKeyState();
    setStatus("Key saved in this browser.");
    loadVideos();
  });
  $("key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORE);
    showKeyState();
    $("videos").replaceChildren();
  });
  $("text-form").addEventListener("submit", searchText);
  $("image").addEventListener("change", () => searchImage($("image").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    searchImage(event.dataTransfer.files[0]);
  });
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
  $("videos-refresh").addEventListener("click", loadVideos);
  showKeyState();
  loadVideos();
}

document.addEventListener("DOMContentLoaded", init);
