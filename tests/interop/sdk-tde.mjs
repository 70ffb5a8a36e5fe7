// sdk-tde: the trusted-device operations of Bitwarden's own SDK (@bitwarden/sdk-internal,
// its PureCrypto functions) behind the line protocol of kh-tde.c, for
// test_sdk_trusted_devices.py.
//
// Usage: node sdk-tde.mjs <path of an installed @bitwarden/cli package>
//
// The SDK is not copied anywhere: it is loaded from the pinned CLI that tests/js/install.sh
// installed. The CLI is one webpack bundle, build/bw.js, whose modules object holds the SDK's
// wasm-bindgen glue (the module with PureCrypto and __wbg_set_wasm); a second chunk beside it
// (the file naming "./bitwarden_wasm_internal_bg.js") instantiates the SDK's .wasm with that
// glue as its imports. This script evaluates only the modules object of bw.js (its functions
// are defined, none is run; the CLI's own entry code never runs), loads the chunk with
// require(), and supplies the few webpack runtime helpers the two modules use (d, r, o, and v,
// the .wasm loader, which reads the file beside bw.js as the bundle's own loader does). Then
// __wbg_set_wasm(instance exports), exactly as the CLI's init does. Nothing is fetched, nothing
// is random but the key material the SDK itself makes.
//
// Each line of stdin is one JSON object {"op": ..., ...}; each gets one line of JSON on stdout:
// the results, or {"error": "..."} when the SDK threw. Bytes are standard base64.
//
//   version                                                   -> cli, sdk
//   trust       user_key                                      -> device_key, pkcs8, spki,
//               encrypted_user_key, encrypted_public_key, encrypted_private_key
//   unlock      device_key, encrypted_private_key, encrypted_user_key -> user_key, pkcs8
//   unwrap_public_key  key, enc                               -> spki
//   public_key  pkcs8                                         -> spki
//   keypair                                                   -> spki, pkcs8
//   encapsulate spki, data                                    -> enc
//   decapsulate pkcs8, enc                                    -> data
//   encrypt     key, data                                     -> enc
//   decrypt     key, enc                                      -> data
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import vm from "node:vm";
import { createRequire } from "node:module";

function fail(msg) {
  process.stderr.write(`sdk-tde: ${msg}\n`);
  process.exit(2);
}

/** The SDK of the CLI package at pkgDir: { PureCrypto, glue (functions by name), version }. */
async function loadSdk(pkgDir) {
  const build = path.join(pkgDir, "build");
  const bwjs = path.join(build, "bw.js");
  const text = fs.readFileSync(bwjs, "utf8");
  // webpack 5's bootstrap: "var __webpack_modules__ = ({ ... \n/******/ \t});"
  const head = "var __webpack_modules__ = (";
  const start = text.indexOf(head);
  const end = start < 0 ? -1 : text.indexOf("\n/******/ \t});", start);
  if (start < 0 || end < 0) fail(`${bwjs}: no webpack modules object found`);
  const objectSrc = text.slice(start + head.length, end + "\n/******/ \t}".length);
  const bundleRequire = createRequire(bwjs);
  const modules = vm.runInThisContext(
    `(function (require, __dirname, __filename) { "use strict"; return (${objectSrc}); })`,
    { filename: bwjs },
  )(bundleRequire, build, bwjs);

  // The chunk that instantiates the SDK's .wasm (bw.js loads it with import() on first use).
  let chunk = null;
  for (const f of fs.readdirSync(build).sort()) {
    if (!f.endsWith(".js") || f === "bw.js") continue;
    const chunkText = fs.readFileSync(path.join(build, f), "utf8");
    if (chunkText.includes('"./bitwarden_wasm_internal_bg.js"')) {
      if (chunk) fail(`${build}: more than one chunk loads the SDK's wasm`);
      chunk = bundleRequire(path.join(build, f));
    }
  }
  if (!chunk || !chunk.modules || chunk.ids.length !== 1) fail(`${build}: no SDK wasm chunk found`);
  const wasmModuleId = String(chunk.ids[0]);
  Object.assign(modules, chunk.modules);
  const m = /__webpack_require__\((\d+)\)/.exec(modules[wasmModuleId].toString());
  if (!m || !modules[m[1]]) fail(`${build}: the SDK's wasm chunk imports no known module`);
  const glueId = m[1];

  const cache = {};
  function webpackRequire(id) {
    if (cache[id]) return cache[id].exports;
    const mod = (cache[id] = { id, exports: {} });
    modules[id].call(mod.exports, mod, mod.exports, webpackRequire);
    return mod.exports;
  }
  webpackRequire.d = (exports, getters) => {
    for (const k of Object.keys(getters))
      if (!Object.prototype.hasOwnProperty.call(exports, k))
        Object.defineProperty(exports, k, { enumerable: true, get: getters[k] });
  };
  webpackRequire.r = (exports) => Object.defineProperty(exports, "__esModule", { value: true });
  webpackRequire.o = (o, p) => Object.prototype.hasOwnProperty.call(o, p);
  webpackRequire.v = (exports, _id, hash, imports) =>
    WebAssembly.instantiate(fs.readFileSync(path.join(build, `${hash}.module.wasm`)), imports)
      .then((r) => Object.assign(exports, r.instance.exports));

  const wasmExports = await webpackRequire(wasmModuleId);
  // The glue's exports are webpack-mangled names; its functions and classes keep their own.
  const glueExports = webpackRequire(glueId);
  const glue = {};
  for (const k of Object.keys(glueExports)) {
    const v = glueExports[k];
    if (typeof v === "function" && v.name) glue[v.name] = v;
  }
  for (const name of ["__wbg_set_wasm", "PureCrypto"])
    if (!glue[name]) fail(`${build}: the SDK glue has no ${name}`);
  glue.__wbg_set_wasm(wasmExports);

  let version = null;
  if (glue.PasswordManagerClient) {
    try {
      const client = new glue.PasswordManagerClient({ get_access_token: async () => undefined },
                                                     undefined);
      version = client.version();
      client.free();
    } catch (e) {
      version = null;
    }
  }
  return { PureCrypto: glue.PureCrypto, version };
}

const b64 = (u8) => Buffer.from(u8).toString("base64");
const bytes = (s) => {
  if (typeof s !== "string") throw new Error("missing base64 argument");
  return new Uint8Array(Buffer.from(s, "base64"));
};
const str = (s) => {
  if (typeof s !== "string") throw new Error("missing string argument");
  return s;
};

function ops(PC, cli, sdk) {
  return {
    version: () => ({ cli, sdk }),
    // Trusting a device as a Bitwarden client does (DeviceTrustService.trustDevice): a new
    // device key and RSA key pair; the private key under the device key, the user key to
    // the public key, the public key under the user key.
    trust: (r) => {
      const userKey = bytes(r.user_key);
      const deviceKey = PC.make_user_key_aes256_cbc_hmac();
      const pkcs8 = PC.rsa_generate_keypair();
      const spki = PC.rsa_extract_public_key(pkcs8);
      return {
        device_key: b64(deviceKey),
        pkcs8: b64(pkcs8),
        spki: b64(spki),
        encrypted_private_key: PC.wrap_decapsulation_key(pkcs8, deviceKey),
        encrypted_user_key: PC.encapsulate_key_unsigned(userKey, spki),
        encrypted_public_key: PC.wrap_encapsulation_key(spki, userKey),
      };
    },
    // Unlocking with a trusted device (DeviceTrustService.decryptUserKeyWithDeviceKey).
    unlock: (r) => {
      const pkcs8 = PC.unwrap_decapsulation_key(str(r.encrypted_private_key), bytes(r.device_key));
      const userKey = PC.decapsulate_key_unsigned(str(r.encrypted_user_key), pkcs8);
      return { user_key: b64(userKey), pkcs8: b64(pkcs8) };
    },
    unwrap_public_key: (r) => ({
      spki: b64(PC.unwrap_encapsulation_key(str(r.enc), bytes(r.key))),
    }),
    public_key: (r) => ({ spki: b64(PC.rsa_extract_public_key(bytes(r.pkcs8))) }),
    keypair: () => {
      const pkcs8 = PC.rsa_generate_keypair();
      return { pkcs8: b64(pkcs8), spki: b64(PC.rsa_extract_public_key(pkcs8)) };
    },
    encapsulate: (r) => ({ enc: PC.encapsulate_key_unsigned(bytes(r.data), bytes(r.spki)) }),
    decapsulate: (r) => ({ data: b64(PC.decapsulate_key_unsigned(str(r.enc), bytes(r.pkcs8))) }),
    encrypt: (r) => ({ enc: PC.symmetric_encrypt_bytes(bytes(r.data), bytes(r.key)) }),
    decrypt: (r) => ({ data: b64(PC.symmetric_decrypt_bytes(str(r.enc), bytes(r.key))) }),
  };
}

const pkgDir = process.argv[2] && path.resolve(process.argv[2]);
if (!pkgDir) fail("usage: node sdk-tde.mjs <path of an installed @bitwarden/cli package>");
const cliVersion = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
const { PureCrypto, version } = await loadSdk(pkgDir);
const table = ops(PureCrypto, cliVersion, version);

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    fail(`not JSON: ${e.message}`);
  }
  const op = req && table[req.op];
  if (!op) fail(`unknown op: ${JSON.stringify(req && req.op)}`);
  let res;
  try {
    res = op(req);
  } catch (e) {
    // wasm-bindgen throws the SDK's error object (or a string); keep its text.
    res = { error: typeof e === "string" ? e : (e && (e.message || e.name)) || String(e) };
  }
  process.stdout.write(JSON.stringify(res) + "\n");
}
