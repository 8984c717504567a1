// Replays the Docker calls of HyOS's manager (src/lib/docker.ts) with the same client,
// dockerode 4, against a socket given on the command line:
//   node manager-calls.js <socket> <server container name>
// Prints one JSON object with what each call returned (or the error it raised).
"use strict";
const Docker = require("dockerode");

const [socketPath, name] = process.argv.slice(2);
const docker = new Docker({ socketPath });

async function step(results, key, fn) {
  try {
    results[key] = { ok: true, value: await fn() };
  } catch (err) {
    results[key] = { ok: false, status: err.statusCode ?? null, error: String(err.message ?? err) };
  }
}

// docker.ts: execInContainer, as the manager runs it (hijacked start, no stdin).
async function execInContainer(container, command) {
  const exec = await container.exec({ Cmd: command, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks = [];
  await new Promise((resolve, reject) => {
    stream.on("data", (chunk) => chunks.push(chunk));
    stream.on("end", resolve);
    stream.on("error", reject);
  });
  const inspection = await exec.inspect();
  const output = Buffer.concat(chunks).toString("utf-8").replace(/[\x00-\x08]/g, "").trim();
  return { exitCode: inspection.ExitCode ?? 0, output };
}

async function main() {
  const results = {};
  const container = docker.getContainer(name);
  await step(results, "ping", async () => String(await docker.ping()));
  await step(results, "inspect", async () => {
    const info = await container.inspect();
    return { running: info.State.Running, status: info.State.Status, tty: info.Config.Tty };
  });
  await step(results, "logs", async () => {
    const logs = await container.logs({
      stdout: true, stderr: true, tail: 100, since: 0, timestamps: true, follow: false,
    });
    return Buffer.from(logs).length;
  });
  await step(results, "exec", () => execInContainer(container, ["id", "-u"]));
  await step(results, "stop", async () => {
    await container.stop({ t: 30 });
    return (await container.inspect()).State.Status;
  });
  await step(results, "start", async () => {
    await container.start();
    return (await container.inspect()).State.Status;
  });
  await step(results, "restart", async () => {
    const before = (await container.inspect()).State.StartedAt;
    await container.restart({ t: 30 });
    const info = await container.inspect();
    return { status: info.State.Status, restarted: info.State.StartedAt !== before };
  });
  // What a compromised dashboard might try with the same client.
  await step(results, "volumes", async () => (await docker.listVolumes()).Volumes.length);
  await step(results, "create", async () =>
    (await docker.createContainer({ Image: "x", HostConfig: { Privileged: true } })).id);
  await step(results, "root-exec", () =>
    container.exec({ Cmd: ["id"], User: "0", AttachStdout: true }).then((e) => e.id));
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err.stack ?? err) + "\n");
  process.exit(1);
});
