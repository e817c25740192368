// edgeport browser sample: turns strokes on a canvas into the digits model's 8x8 input and
// shows the prediction. The model is the TF.js graph model edgeport exported (model/model.json).
//
// Preprocessing follows the digits data set (UCI optdigits): the digit's bounding box is scaled
// into a 32x32 bitmap, then each 4x4 block's count of ink pixels (0..16) becomes one of the 8x8
// inputs, divided by 16 as the model was trained.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const status = document.getElementById("status");
let model = null;

function resetPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("prediction").textContent = "\u00a0";
  document.getElementById("prediction").dataset.class = "";
  document.getElementById("bars").innerHTML = "";
}

// --- drawing with mouse, pen or touch
let drawing = false;
function point(event) {
  const r = pad.getBoundingClientRect();
  return [event.clientX - r.left, event.clientY - r.top];
}
pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  const [x, y] = point(e);
  ctx.beginPath();
  ctx.moveTo(x, y);
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const [x, y] = point(e);
  ctx.lineTo(x, y);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 18;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.stroke();
});
pad.addEventListener("pointerup", () => { drawing = false; predict(); });
pad.addEventListener("pointerleave", () => { if (drawing) { drawing = false; predict(); } });
document.getElementById("clear").addEventListener("click", resetPad);

// --- preprocessing: canvas -> [1, 1, 8, 8] in [0, 1]
function inkBox(pixels, w, h) {
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (pixels[(y * w + x) * 4] > 127) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  return x1 < 0 ? null : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

function toInput() {
  const pixels = ctx.getImageData(0, 0, pad.width, pad.height).data;
  const box = inkBox(pixels, pad.width, pad.height);
  if (!box) return null;
  const [bx, by, bw, bh] = box;
  // fit the box into 32x32 keeping its aspect ratio, centered (tall digits fill the height)
  const side = Math.max(bw, bh);
  const bitmap = document.createElement("canvas");
  bitmap.width = bitmap.height = 32;
  const b = bitmap.getContext("2d");
  b.fillStyle = "#000";
  b.fillRect(0, 0, 32, 32);
  const scale = 32 / side;
  b.drawImage(pad, bx, by, bw, bh, (32 - bw * scale) / 2, (32 - bh * scale) / 2, bw * scale, bh * scale);
  const px = b.getImageData(0, 0, 32, 32).data;
  const input = new Float32Array(64);
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      if (px[(y * 32 + x) * 4] > 127) input[Math.floor(y / 4) * 8 + Math.floor(x / 4)] += 1 / 16;
    }
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
  const input = toInput();
  if (!input || !model) return;
  showInput(input);
  const logits = tf.tidy(() => model.execute(tf.tensor4d(input, [1, 1, 8, 8])));
  const values = await logits.data();
  logits.dispose();
  const probs = softmax(Array.from(values));
  const best = probs.indexOf(Math.max(...probs));
  const out = document.getElementById("prediction");
  out.textContent = String(best);
  out.dataset.class = String(best);
  document.getElementById("bars").innerHTML = probs.map((p, i) =>
    `<div class="bar">${i} <span class="fill" style="width:${Math.round(p * 150)}px"></span> ${(p * 100).toFixed(1)}%</div>`
  ).join("");
}

function softmax(v) {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

async function main() {
  resetPad();
  tf.wasm.setWasmPaths("lib/");
  const backend = await tf.setBackend("wasm").catch(() => false) ? "wasm" : (await tf.setBackend("cpu"), "cpu");
  await tf.ready();
  model = await tf.loadGraphModel("model/model.json");
  status.textContent = `model loaded (TF.js ${tf.version.tfjs}, ${backend} backend)`;
  document.body.dataset.ready = "true";
}

main().catch((e) => { status.textContent = `could not load the model: ${e.message}`; });
