// A Node.js client built from our .proto alone: proves a client team can integrate without our Python.
//
// Usage: node remove.mjs [--target HOST:PORT] [--namespace NS] [--force] [--no-prune] [--allow-missing]
//                        [--async-gc] [--timeout SECONDS] IMAGE
// The target defaults to $IMAGEREMOVAL_SERVER, then 127.0.0.1:50051. On success it prints the response
// as JSON and exits 0; on a gRPC error it prints {"code", "message", "reason", "domain", "metadata"}
// decoded from the grpc-status-details-bin trailer and exits 1; usage errors exit 2.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const API_ROOT = fileURLToPath(new URL("../../api", import.meta.url));
const PROTO = "imageremoval/v1/image_removal.proto";
const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";

// Just the wire shape of the rich error model (same field numbers as googleapis), so that this client
// needs no proto beyond ours.
const RICH_ERRORS = protobuf.parse(
  `
  syntax = "proto3";
  package google.protobuf;
  message Any { string type_url = 1; bytes value = 2; }
`,
  { keepCase: true },
).root;
protobuf.parse(
  `
  syntax = "proto3";
  package google.rpc;
  message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`,
  RICH_ERRORS,
  { keepCase: true },
);
const Status = RICH_ERRORS.lookupType("google.rpc.Status");
const ErrorInfo = RICH_ERRORS.lookupType("google.rpc.ErrorInfo");

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, value]) => [value, name]));

function usage(message) {
  process.stderr.write(`remove.mjs: ${message}\n`);
  process.exit(2);
}

function parseCommandLine() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        target: { type: "string", default: process.env.IMAGEREMOVAL_SERVER || "127.0.0.1:50051" },
        namespace: { type: "string", short: "n", default: "" },
        force: { type: "boolean", short: "f", default: false },
        "no-prune": { type: "boolean", default: false },
        "allow-missing": { type: "boolean", default: false },
        "async-gc": { type: "boolean", default: false },
        timeout: { type: "string", default: "30" },
      },
    });
  } catch (err) {
    usage(err.message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) usage("exactly one IMAGE is required");
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) usage(`--timeout must be a positive number of seconds, not ${values.timeout}`);
  return { ...values, image: positionals[0], timeout };
}

/** The rich error carried by the status trailer, or what the status alone says when there is none. */
function describeError(err) {
  const out = { code: CODE_NAMES[err.code] ?? err.code, message: err.details, reason: null, domain: null, metadata: {} };
  const [raw] = err.metadata?.get("grpc-status-details-bin") ?? [];
  if (!raw) return out;
  const status = Status.toObject(Status.decode(raw));
  out.code = CODE_NAMES[status.code] ?? status.code;
  out.message = status.message;
  const info = (status.details ?? []).find((any) => any.type_url === ERROR_INFO_TYPE);
  if (info) {
    const decoded = ErrorInfo.toObject(ErrorInfo.decode(info.value));
    out.reason = decoded.reason;
    out.domain = decoded.domain;
    out.metadata = decoded.metadata ?? {};
  }
  return out;
}

function main() {
  const args = parseCommandLine();
  // int64 fields (reclaimableBytes) as decimal strings, as proto3's JSON mapping writes them.
  const definition = protoLoader.loadSync(PROTO, { includeDirs: [API_ROOT], longs: String });
  const { ImageRemovalService } = grpc.loadPackageDefinition(definition).imageremoval.v1;
  const client = new ImageRemovalService(args.target, grpc.credentials.createInsecure());
  const request = {
    image: args.image,
    namespace: args.namespace,
    force: args.force,
    noPrune: args["no-prune"],
    allowMissing: args["allow-missing"],
    asyncGc: args["async-gc"],
  };
  const deadline = new Date(Date.now() + args.timeout * 1000);
  client.removeImage(request, { deadline }, (err, response) => {
    client.close();
    if (err) {
      process.stdout.write(`${JSON.stringify(describeError(err))}\n`);
      process.exitCode = 1;
      return;
    }
    process.stdout.write(`${JSON.stringify(response)}\n`);
  });
}

main();
