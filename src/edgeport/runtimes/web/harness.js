// edgeport's browser harness, driven by runtimes/browser.py through window.edgeport.
// Every call returns {ok: value} or {error: "one line"}; tensors travel as base64 of their
// little-endian bytes ({dtype, shape, b64}). Times are measured here with performance.now().
"use strict";

(() => {
  const LIB = new URL("lib/", location.href).href;
  const TYPED = {
    float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array,
    int8: Int8Array, uint8: Uint8Array, bool: Uint8Array, float16: Uint16Array,
  };
  let state = null; // {impl, model or session, threads}

  function addScript(name) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = LIB + name;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`cannot load ${name} from the static server`));
      document.head.appendChild(script);
    });
  }

  function decode({dtype, shape, b64}) {
    const text = atob(b64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    if (!TYPED[dtype]) throw new Error(`input dtype ${dtype} is not supported by the harness`);
    return {dtype, shape, data: new TYPED[dtype](bytes.buffer)};
  }

  function encode({dtype, shape, data}) {
    if (!ArrayBuffer.isView(data)) throw new Error(`output dtype ${dtype} cannot be read back`);
    // TF.js's cpu backend casts int32 -> float32 by relabelling: the values stay in an Int32Array
    if (TYPED[dtype] && dtype !== "float16" && !(data instanceof TYPED[dtype])) data = TYPED[dtype].from(data);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return {dtype, shape: Array.from(shape, Number), b64: btoa(text)};
  }

  // TF.js graph models on the cpu or wasm backend.
  const tfjs = {
    async load({backend, url}) {
      const name = backend.replace("tfjs-", "");
      if (name === "wasm") {
        // Single-threaded build: the flag keeps tfjs off the threaded wasm even in an isolated page.
        tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
        tf.wasm.setWasmPaths(LIB);
      }
      if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
      await tf.ready();
      const model = await tf.loadGraphModel(url);
      return {
        model, async: false,
        threads: name === "wasm" ? tf.wasm.getThreadsCount() : 1,
        inputs: model.inputs.map((t, i) => ({name: model.inputNodes[i], shape: t.shape ?? null, dtype: t.dtype ?? null})),
        outputs: model.outputNodes.map((name) => ({name, shape: null, dtype: null})),
      };
    },
    feed(feeds) {
      const out = {};
      for (const [name, t] of Object.entries(feeds)) out[name] = tf.tensor(t.data, t.shape, t.dtype);
      return out;
    },
    async infer(st, inputs, names) {
      let outs;
      if (!st.async) {
        try {
          outs = st.model.execute(inputs, names);
        } catch (e) {
          if (!/executeAsync/.test(String(e && e.message))) throw e;
          st.async = true; // the graph has control flow
        }
      }
      if (st.async) outs = await st.model.executeAsync(inputs, names);
      outs = Array.isArray(outs) ? outs : [outs];
      try {
        const result = [];
        for (const o of outs) result.push({dtype: o.dtype, shape: o.shape, data: await o.data()});
        return result;
      } finally {
        tf.dispose(outs);
      }
    },
    release(inputs) { tf.dispose(Object.values(inputs)); },
    close(st) { st.model.dispose(); },
  };

  // ONNX / ORT-format models in onnxruntime-web's wasm execution provider.
  const onnx = {
    async load({url}) {
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      ort.env.wasm.wasmPaths = LIB;
      ort.env.logLevel = "error";
      const session = await ort.InferenceSession.create(url, {executionProviders: ["wasm"], graphOptimizationLevel: "all"});
      const meta = (names, list) => names.map((name, i) => {
        const m = list && list[i];
        const shape = m && m.isTensor ? m.shape.map((d) => (typeof d === "number" && d >= 0 ? d : -1)) : null;
        return {name, shape, dtype: m && m.isTensor ? m.type : null};
      });
      return {
        session, threads: ort.env.wasm.numThreads,
        inputs: meta(session.inputNames, session.inputMetadata),
        outputs: meta(session.outputNames, session.outputMetadata),
      };
    },
    feed(feeds) {
      const out = {};
      for (const [name, t] of Object.entries(feeds)) out[name] = new ort.Tensor(t.dtype, t.data, t.shape);
      return out;
    },
    async infer(st, inputs, names) {
      const res = await st.session.run(inputs, names);
      return names.map((name) => {
        const t = res[name];
        const out = {dtype: t.type, shape: t.dims, data: t.data};
        t.dispose();
        return out;
      });
    },
    release(inputs) { for (const t of Object.values(inputs)) t.dispose(); },
    close(st) { return st.session.release(); },
  };

  function prepare(feeds) {
    const decoded = {};
    for (const [name, t] of Object.entries(feeds)) decoded[name] = decode(t);
    return state.impl.feed(decoded);
  }

  async function reply(body) {
    try {
      return {ok: await body()};
    } catch (e) {
      const text = String((e && e.message) || e).trim().split("\n")[0];
      return {error: text || "unknown error"};
    }
  }

  window.edgeport = {
    load: (args) => reply(async () => {
      for (const name of args.scripts) await addScript(name);
      const impl = args.backend.startsWith("tfjs-") ? tfjs : onnx;
      const start = performance.now(); // runtime init (wasm fetch + compile) + model fetch + ready
      const loaded = await impl.load({...args, url: new URL(args.url, location.href).href});
      const loadMs = performance.now() - start;
      state = {impl, ...loaded};
      return {load_ms: loadMs, threads: loaded.threads, inputs: loaded.inputs, outputs: loaded.outputs,
              isolated: self.crossOriginIsolated === true};
    }),

    run: ({feeds, outputs}) => reply(async () => {
      const inputs = prepare(feeds);
      try {
        const start = performance.now();
        const result = await state.impl.infer(state, inputs, outputs);
        const ms = performance.now() - start;
        return {ms, outputs: result.map(encode)};
      } finally {
        state.impl.release(inputs);
      }
    }),

    time: ({feeds, outputs, runs, warmup}) => reply(async () => {
      const inputs = prepare(feeds);
      try {
        for (let i = 0; i < warmup; i++) await state.impl.infer(state, inputs, outputs);
        const times = [];
        for (let i = 0; i < runs; i++) {
          const start = performance.now();
          await state.impl.infer(state, inputs, outputs);
          times.push(performance.now() - start);
        }
        return times;
      } finally {
        state.impl.release(inputs);
      }
    }),

    tensors: () => reply(async () => (typeof tf === "undefined" ? null : tf.memory().numTensors)),

    close: () => reply(async () => {
      if (state) await state.impl.close(state);
      state = null;
      return null;
    }),
  };
})();
