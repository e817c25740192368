// edgeport browser sample: turns strokes on a canvas into the digits model's 8x8 input and
// shows the prediction. The model is the TF.js graph model edgeport exported (model/model.json).
//
// Preprocessing follows the digits data set (UCI optdigits, made with NIST's normalization):
// the digit is scaled to the full height of a 32x32 bitmap and at most 20 pixels wide, centered
// (wide digits are squeezed to 20, narrow ones such as a "1" keep their proportions), with its
// stroke width set so that about 310 of the 1024 pixels are ink (the data set's median for every
// class, whether "1" or "8"); each 4x4 block's count of ink pixels (0..16) becomes one of the 8x8
// inputs, divided by 16 as the model was trained.
"use strict";

const BITMAP = 32;      // side of the normalized bitmap
const MAX_WIDTH = 20;   // widest a digit may be in it (every digit fills the height)
const INK = 310;        // ink pixels of a normalized digit
const PENS = [1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 7, 8, 9, 10, 11, 12];  // stroke widths tried
const SCREEN_PEN = 18;  // stroke width on the pad, for the eye only

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const prediction = document.getElementById("prediction");
const bars = document.getElementById("bars");
const status = document.getElementById("status");
let model = null;
let strokes = [];  // each stroke: [[x, y], ...] in pad pixels
let version = 0;   // bumped on every change, so a slow prediction of older strokes is dropped

function resetPad() {
  strokes = [];
  version++;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("seen").getContext("2d").clearRect(0, 0, 8, 8);
  prediction.textContent = "\u00a0";
  prediction.dataset.class = "";
  prediction.dataset.strokes = "0";
  bars.innerHTML = "";
  delete bars.dataset.probabilities;
}

// --- drawing with mouse, pen or touch
function point(event) {
  const r = pad.getBoundingClientRect();  // border box; the canvas pixels start inside the border
  return [(event.clientX - r.left - pad.clientLeft) * pad.width / pad.clientWidth,
          (event.clientY - r.top - pad.clientTop) * pad.height / pad.clientHeight];
}

function ink(from, to) {
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = SCREEN_PEN;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(...from);
  ctx.lineTo(...to);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  pad.setPointerCapture(e.pointerId);  // the stroke goes on even if the pointer leaves the pad
  const p = point(e);
  strokes.push([p]);
  version++;
  ink(p, p);
});
pad.addEventListener("pointermove", (e) => {
  if (!pad.hasPointerCapture(e.pointerId)) return;
  const stroke = strokes[strokes.length - 1];
  const p = point(e);
  ink(stroke[stroke.length - 1], p);
  stroke.push(p);
});
function endStroke(e) {
  if (!pad.hasPointerCapture(e.pointerId)) return;
  pad.releasePointerCapture(e.pointerId);
  predict();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
document.getElementById("clear").addEventListener("click", resetPad);

// --- preprocessing: strokes -> [1, 1, 8, 8] in [0, 1]
function toBitmap(strokes, pen) {
  const points = strokes.flat();
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), y0 = Math.min(...ys);
  const w = Math.max(...xs) - x0, h = Math.max(...ys) - y0;
  // Scale the pen's path so that the ink (path plus half a pen each side) fills the height and
  // is at most MAX_WIDTH wide; a dot (h = 0) keeps scale 1.
  const sy = h > 0 ? (BITMAP - pen) / h : 1;
  const sx = w > 0 ? Math.min(sy, (MAX_WIDTH - pen) / w) : sy;
  const dx = (BITMAP - w * sx) / 2, dy = (BITMAP - h * sy) / 2;

  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = BITMAP;
  const b = canvas.getContext("2d");
  b.fillStyle = "#000";
  b.fillRect(0, 0, BITMAP, BITMAP);
  b.strokeStyle = "#fff";
  b.lineWidth = pen;
  b.lineCap = b.lineJoin = "round";
  for (const stroke of strokes) {
    const path = stroke.map(([x, y]) => [dx + (x - x0) * sx, dy + (y - y0) * sy]);
    b.beginPath();
    b.moveTo(...path[0]);
    for (const p of path.length > 1 ? path.slice(1) : path) b.lineTo(...p);  // a tap leaves a dot
    b.stroke();
  }
  const px = b.getImageData(0, 0, BITMAP, BITMAP).data;
  const ink = new Uint8Array(BITMAP * BITMAP);
  for (let i = 0; i < ink.length; i++) ink[i] = px[i * 4] > 127 ? 1 : 0;
  return ink;
}

function toInput(strokes) {
  if (strokes.length === 0) return null;
  // The pen whose ink count is nearest INK, standing in for NIST's stroke-width normalization.
  let ink = null, best = Infinity;
  for (const pen of PENS) {
    const candidate = toBitmap(strokes, pen);
    const off = Math.abs(candidate.reduce((a, b) => a + b, 0) - INK);
    if (off < best) [ink, best] = [candidate, off];
  }
  const input = new Float32Array(64);
  for (let y = 0; y < BITMAP; y++) {
    for (let x = 0; x < BITMAP; x++) input[(y >> 2) * 8 + (x >> 2)] += ink[y * BITMAP + x] / 16;
  }
  return input;
}

function showInput(input) {
  const seen = document.getElementById("seen").getContext("2d");
  const img = seen.createImageData(8, 8);
  for (let i = 0; i < 64; i++) {
    const v = Math.round(input[i] * 255);
    img.data.set([v, v, v, 255], i * 4);
  }
  seen.putImageData(img, 0, 0);
}

// --- inference
async function predict() {
  const input = toInput(strokes);
  if (!input || !model) return;
  const asked = version, count = strokes.length;
  showInput(input);
  const logits = tf.tidy(() => model.execute(tf.tensor4d(input, [1, 1, 8, 8])));
  const values = await logits.data();
  logits.dispose();
  if (asked !== version) return;  // the drawing changed meanwhile
  const probs = softmax(Array.from(values));
  const best = probs.indexOf(Math.max(...probs));
  bars.innerHTML = probs.map((p, i) =>
    `<div class="bar">${i} <span class="fill" style="width:${Math.round(p * 150)}px"></span> ${(p * 100).toFixed(1)}%</div>`
  ).join("");
  bars.dataset.probabilities = JSON.stringify(probs);
  prediction.textContent = String(best);
  prediction.dataset.class = String(best);
  prediction.dataset.strokes = String(count);  // which drawing the prediction is for
}

function softmax(v) {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

async function main() {
  resetPad();
  tf.wasm.setWasmPaths(new URL("lib/", location.href).href);
  const backend = (await tf.setBackend("wasm")) ? "wasm" : "cpu";
  if (backend === "cpu") await tf.setBackend("cpu");
  await tf.ready();
  model = await tf.loadGraphModel("model/model.json");
  const threads = backend === "wasm" ? `, ${tf.wasm.getThreadsCount()} thread(s)` : "";
  status.textContent = `model loaded (TF.js ${tf.version.tfjs}, ${backend} backend${threads})`;
  document.body.dataset.ready = "true";
}

main().catch((e) => { status.textContent = `could not load the model: ${e.message}`; console.error(e); });
