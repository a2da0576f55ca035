/**
 * A second, private Docker daemon for tests that crash or freeze the engine in the middle of a kfarm run.
 *
 * The machine's main engine (/var/run/docker.sock) serves every other test, so it must never be killed or
 * stopped. This harness starts another `dockerd` next to it, with its own socket, data-root, exec-root (and
 * so its own managed containerd, which lives in `<exec-root>/containerd`), pidfile, config file, trust key,
 * bridge and cgroup parent: nothing it does can reach the main engine, and everything it leaves behind can
 * be found again by path or name and removed.
 *
 * Usage:
 *
 *   const engine = await startSecondEngine();
 *   try {
 *     await engine.loadImages(['kfarm/debian:bookworm', 'kfarm/debian-bookworm:6.1.0-57-amd64']);
 *     const run = execa('node', [cli, 'build', …], { env: { DOCKER_HOST: engine.dockerHost }, reject: false });
 *     … await engine.kill() / engine.freeze() mid-build …
 *   } finally {
 *     await engine.stop();
 *   }
 *
 * Requirements: root (dockerd, `ip`, `umount`), dockerd/containerd/runc on PATH, Linux.
 *
 * Everything lives under /tmp/kfarm-e2-<name> (the data-root on a tmpfs by default, see `storage`). Not
 * under os.tmpdir(): under vitest that is a long scratch path, and unix socket paths, containerd's among
 * them, must stay under 108 bytes; and the test run's global teardown removes its scratch root with
 * `rm -rf`, which must never walk into this engine's live mounts.
 * A test process that dies without stop() leaves a stale engine; the next startSecondEngine() (or
 * sweepStaleSecondEngines()) removes every engine whose owning process is gone.
 */
import { execa, type Result } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface SecondEngine {
  /** The engine's name: its files are under /tmp/kfarm-e2-<name>, its bridge is kfe2-<name>. */
  name: string;
  /** Absolute path of the engine's unix socket. */
  socket: string;
  /** `unix://<socket>`, for DOCKER_HOST (or `docker -H`). */
  dockerHost: string;
  /** dockerd's pid. */
  pid: number;
  /** dockerd's log (stdout and stderr); removed by stop(), so read it before if a test wants to print it. */
  logFile: string;
  /**
   * Copies images from the main engine (`docker save refs | docker -H <second> load`, streamed, no temp file),
   * e.g. the builder images a test needs: a headers image needs no base image loaded beside it (save includes
   * all its layers), but kfarm looks base images up by name, so load those the test relies on too.
   */
  loadImages(refs: string[]): Promise<void>;
  /** Whether the daemon answers GET /_ping within timeoutMs (false when frozen, killed or stopped). */
  ping(timeoutMs?: number): Promise<boolean>;
  /**
   * SIGKILLs dockerd and waits until it is gone. Its containerd dies with it (dockerd starts it with a
   * parent-death signal) but containerd-shims and the containers' processes survive, and the socket file
   * stays (connections are refused): the realistic crash. stop() cleans all of that up.
   */
  kill(): Promise<void>;
  /**
   * SIGSTOPs dockerd (only dockerd: containerd and the containers keep running) and waits until the kernel
   * reports it stopped. Its socket still accepts connections (the kernel's listen backlog does that) but no
   * request is ever answered.
   */
  freeze(): Promise<void>;
  /** SIGCONTs dockerd; a no-op once dockerd is gone, so a `finally` can always call it. */
  thaw(): Promise<void>;
  /**
   * Full cleanup, idempotent, safe after kill() or freeze(): kills dockerd, its containerd, the shims and the
   * containers' processes, unmounts what they mounted, removes their cgroups, the shims' sockets in
   * /run/containerd/s, the bridge, and /tmp/kfarm-e2-<name>. Throws if anything is still there afterwards.
   */
  stop(): Promise<void>;
}

export interface SecondEngineOptions {
  /** 1–10 characters [a-z0-9-]; default random. Names the directory, the bridge (≤ 15 chars) and the cgroup. */
  name?: string;
  /** How long dockerd may take to answer its first ping; default 60 s. */
  timeoutMs?: number;
  /**
   * Where the data-root (images, containers' layers) lives: 'tmpfs' (default; fast to fill and to remove,
   * costs memory for what is loaded) or 'disk' (under /tmp, for images too big for memory).
   */
  storage?: 'tmpfs' | 'disk';
  /** The tmpfs's size limit (mount's size=), default '8g'; it only uses memory for what is stored. */
  tmpfsSize?: string;
  /**
   * Containers reach the network through the host (NAT and forwarding rules for the engine's bridge, tagged
   * with its name and removed with it), as on a real engine: kfarm's apt layers (tool images, --build-deps)
   * need it. Default off: this dockerd touches no firewall by itself.
   */
  network?: boolean;
}

const stateRoot = '/tmp';
const dirPrefix = 'kfarm-e2-';
const namePattern = /^[a-z0-9][a-z0-9-]{0,9}$/;
// Shims of every containerd on the machine put their sockets here, named by a hash of (containerd address,
// namespace, container id) (containerd 1.6 runtime/v2/shim SocketAddress). A SIGKILLed shim leaves its socket.
const shimSocketDir = '/run/containerd/s';

interface EnginePaths {
  name: string;
  base: string;
  dataRoot: string;
  execRoot: string;
  socket: string;
  pidfile: string;
  logFile: string;
  configFile: string;
  ownerFile: string;
  bridge: string;
  cgroupParent: string;
  containerdAddress: string;
}

/** Everything an engine owns follows from its name, so a stale engine can be cleaned up from its directory alone. */
function pathsFor(name: string): EnginePaths {
  const base = join(stateRoot, dirPrefix + name);
  const execRoot = join(base, 'exec');
  return {
    name,
    base,
    dataRoot: join(base, 'data'),
    execRoot,
    socket: join(base, 'docker.sock'),
    pidfile: join(base, 'dockerd.pid'),
    logFile: join(base, 'dockerd.log'),
    configFile: join(base, 'daemon.json'),
    ownerFile: join(base, 'owner'),
    bridge: `kfe2-${name}`,
    cgroupParent: `/${dirPrefix}${name}`,
    containerdAddress: join(execRoot, 'containerd', 'containerd.sock'),
  };
}

export async function startSecondEngine(options: SecondEngineOptions = {}): Promise<SecondEngine> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    throw new Error('startSecondEngine: needs Linux and root (it runs dockerd, ip and umount)');
  }
  const name = options.name ?? randomBytes(3).toString('hex');
  if (!namePattern.test(name))
    throw new Error(`startSecondEngine: invalid name ${JSON.stringify(name)} (1-10 of [a-z0-9-])`);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const storage = options.storage ?? 'tmpfs';
  await sweepStaleSecondEngines();
  const paths = pathsFor(name);

  // mkdir without `recursive` fails on an existing directory: a live engine of that name is never reused.
  // The owner file comes first, so a crash at any later point still leaves a directory the sweep recognises.
  await mkdir(paths.base, { mode: 0o700 });
  await writeFile(paths.ownerFile, await ownerStamp(process.pid));

  const started = Date.now();
  let pid: number | undefined;
  try {
    await createBridge(paths.bridge);
    if (options.network) await forwardBridge(paths.bridge, 'add');
    if (storage === 'tmpfs') {
      // The data-root in memory: loading images and, above all, removing them at stop() do no disk I/O, which
      // on a busy test machine (a parallel suite bootstrapping images) costs tens of seconds per stop().
      // overlay2 works on tmpfs; the tmpfs only holds what is loaded (a headers image ≈ 450 MB).
      await mkdir(paths.dataRoot, { mode: 0o711 });
      await execa('mount', [
        '-t',
        'tmpfs',
        '-o',
        `mode=711,size=${options.tmpfsSize ?? '8g'}`,
        `kfarm-e2-${name}`,
        paths.dataRoot,
      ]);
    }
    const daemonConfig: Record<string, string> = {};
    // dockerd < 23 creates /etc/docker/key.json when it is missing; keep even that inside the engine's directory.
    if ((await dockerdMajorVersion()) < 23) daemonConfig['deprecated-key-path'] = join(paths.base, 'key.json');
    await writeFile(paths.configFile, JSON.stringify(daemonConfig));

    const args = [
      // An own (nearly empty) config file: /etc/docker/daemon.json belongs to the main engine, and settings such
      // as `hosts` or `data-root` in it would collide with the flags below.
      `--config-file=${paths.configFile}`,
      `--data-root=${paths.dataRoot}`,
      // Own exec-root: dockerd's managed containerd (started because --containerd is not given) runs in
      // <exec-root>/containerd with its own socket, so it never meets the main engine's containerd.
      `--exec-root=${paths.execRoot}`,
      `--pidfile=${paths.pidfile}`,
      `--host=unix://${paths.socket}`,
      // Never --bridge=none: with the default bridge disabled, dockerd deletes the host's docker0 and breaks
      // every container of the main engine. An own, pre-made bridge is left alone by the main engine.
      `--bridge=${paths.bridge}`,
      // Do not touch the host's firewall or sysctls (the main engine owns those; kfarm's builds use network none).
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      '--ip-forward=false',
      '--userland-proxy=false',
      // Own cgroup parent: the containers' processes can be found (and their cgroups removed) after a crash,
      // even once their shim is dead and they were re-parented.
      `--cgroup-parent=${paths.cgroupParent}`,
      '--exec-opt=native.cgroupdriver=cgroupfs',
      '--storage-driver=overlay2',
    ];
    // The log goes to a file, not a pipe: a pipe nobody reads would block dockerd once full, and a frozen or
    // killed test process must not take dockerd's stderr with it. Appending: both streams share the file.
    const log = { file: paths.logFile, append: true } as const;
    const daemon = execa('dockerd', args, {
      stdin: 'ignore',
      stdout: log,
      stderr: log,
      // Settings meant for clients (DOCKER_HOST) or for the main engine (DOCKER_TMPDIR, …) must not reach it.
      env: daemonEnv(),
      extendEnv: false,
      // Resolve, never reject: a SIGKILL is the expected way this process ends.
      reject: false,
      // Default (true): if the test process exits without stop(), execa SIGTERMs dockerd; the sweep does the rest.
      cleanup: true,
    });
    if (daemon.pid === undefined) {
      const result = await daemon;
      throw new Error(`dockerd did not start: ${result.message}`);
    }
    const daemonPid = daemon.pid;
    pid = daemonPid;
    let exited = false;
    const exit: Promise<Result> = daemon.then((result) => {
      exited = true;
      return result;
    });

    await waitUntilAnswering(paths, exit, () => exited, timeoutMs, started);

    let stopping: Promise<void> | undefined;
    const engine: SecondEngine = {
      name,
      socket: paths.socket,
      dockerHost: `unix://${paths.socket}`,
      pid: daemonPid,
      logFile: paths.logFile,
      loadImages: (refs) => loadImages(paths, refs),
      ping: (ms = 2_000) => pingSocket(paths.socket, ms),
      async kill() {
        if (exited) return;
        signal(daemonPid, 'SIGKILL');
        await withTimeout(exit, 10_000, `dockerd ${daemonPid} did not exit after SIGKILL`);
      },
      async freeze() {
        if (exited) throw new Error(`freeze: dockerd ${daemonPid} is not running`);
        signal(daemonPid, 'SIGSTOP');
        await waitForState(daemonPid, (s) => s === 'T' || s === 't', 'stopped');
      },
      async thaw() {
        if (exited) return;
        signal(daemonPid, 'SIGCONT');
        await waitForState(daemonPid, (s) => s !== 'T' && s !== 't', 'running');
      },
      stop() {
        stopping ??= (async () => {
          // SIGKILL, not SIGTERM: a graceful shutdown of a frozen or half-dead daemon may never end, and the
          // cleanup below handles a crashed engine anyway (it is what the sweep does for stale ones).
          if (!exited) {
            signal(daemonPid, 'SIGKILL');
            await withTimeout(exit, 10_000, `dockerd ${daemonPid} did not exit after SIGKILL`);
          }
          await cleanupEngine(paths);
        })();
        return stopping;
      },
    };
    return engine;
  } catch (error) {
    // Leave nothing behind when the start fails; the error keeps what the log said.
    if (pid !== undefined) signal(pid, 'SIGKILL');
    try {
      await cleanupEngine(paths);
    } catch (cleanupError) {
      throw new AggregateError(
        [error, cleanupError],
        `startSecondEngine failed and so did its cleanup: ${(error as Error).message}`,
        { cause: cleanupError },
      );
    }
    throw error;
  }
}

/**
 * Removes every engine under /tmp/kfarm-e2-* whose owning process is gone (a test process that died
 * without stop()). startSecondEngine() calls it; a global setup may too.
 */
export async function sweepStaleSecondEngines(): Promise<string[]> {
  const swept: string[] = [];
  for (const entry of await readdir(stateRoot)) {
    if (!entry.startsWith(dirPrefix)) continue;
    const name = entry.slice(dirPrefix.length);
    if (!namePattern.test(name)) continue;
    const paths = pathsFor(name);
    const owner = await readFile(paths.ownerFile, 'utf8').catch(() => '');
    const [ownerPid] = owner.split(' ');
    if (owner !== '' && ownerPid !== undefined && (await ownerStamp(Number(ownerPid)).catch(() => '')) === owner)
      continue;
    await cleanupEngine(paths);
    swept.push(name);
  }
  return swept;
}

// ---------------------------------------------------------------------------------------------------------
// Start-up

/** `<pid> <start time>`: the start time (in clock ticks since boot) tells a live owner from a reused pid. */
async function ownerStamp(pid: number): Promise<string> {
  const info = await readProc(pid);
  if (!info) throw new Error(`no process ${pid}`);
  return `${pid} ${info.startTime}`;
}

async function dockerdMajorVersion(): Promise<number> {
  const { stdout } = await execa('dockerd', ['--version']);
  const match = /version (\d+)\./.exec(stdout);
  return match?.[1] ? Number(match[1]) : 0;
}

function daemonEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('DOCKER_') || key === 'NOTIFY_SOCKET') continue;
    env[key] = value;
  }
  return env;
}

/** The client environment for the second engine: DOCKER_CONTEXT would conflict with DOCKER_HOST. */
function clientEnv(paths: EnginePaths): Record<string, string | undefined> {
  return {
    DOCKER_HOST: `unix://${paths.socket}`,
    DOCKER_CONTEXT: undefined,
    DOCKER_TLS_VERIFY: undefined,
    DOCKER_CERT_PATH: undefined,
  };
}

/**
 * A bridge with a /24 of 10.253.0.0/16 that overlaps no address or route of the host (docker0 is usually
 * 172.17.0.0/16, but a host may use anything).
 */
async function createBridge(bridge: string): Promise<void> {
  const taken: string[] = [];
  const addrs = await execa('ip', ['-o', '-4', 'addr', 'show']);
  for (const match of addrs.stdout.matchAll(/\binet (\d+\.\d+\.\d+\.\d+\/\d+)/g)) if (match[1]) taken.push(match[1]);
  const routes = await execa('ip', ['-4', 'route', 'show']);
  for (const line of routes.stdout.split('\n')) {
    const dest = line.split(' ')[0];
    if (dest && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dest)) taken.push(dest.includes('/') ? dest : `${dest}/32`);
  }
  let subnet: number | undefined;
  for (let third = 0; third < 256 && subnet === undefined; third++) {
    const candidate = `10.253.${third}.0/24`;
    if (!taken.some((cidr) => cidrsOverlap(cidr, candidate))) subnet = third;
  }
  if (subnet === undefined) throw new Error('startSecondEngine: no free /24 in 10.253.0.0/16 for the bridge');
  await execa('ip', ['link', 'add', bridge, 'type', 'bridge']);
  await execa('ip', ['addr', 'add', `10.253.${subnet}.1/24`, 'dev', bridge]);
  await execa('ip', ['link', 'set', bridge, 'up']);
}

/**
 * NAT and forwarding for the bridge's subnet (docker's FORWARD policy is DROP), each rule tagged with the
 * bridge's name; removing deletes what is there and ignores what is not (an engine that never had network).
 */
async function forwardBridge(bridge: string, how: 'add' | 'remove'): Promise<void> {
  const addr = await execa('ip', ['-o', '-4', 'addr', 'show', 'dev', bridge]);
  const subnet = /\binet (\d+\.\d+\.\d+)\.\d+\/24/.exec(addr.stdout)?.[1];
  if (!subnet) return;
  const tag = ['-m', 'comment', '--comment', bridge];
  const rules = [
    ['-t', 'nat', 'POSTROUTING', '-s', `${subnet}.0/24`, '!', '-o', bridge, '-j', 'MASQUERADE'],
    ['FORWARD', '-i', bridge, '-j', 'ACCEPT'],
    ['FORWARD', '-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
  ];
  for (const rule of rules) {
    const at = rule[0] === '-t' ? 2 : 0;
    const args = [...rule.slice(0, at), how === 'add' ? '-I' : '-D', ...rule.slice(at), ...tag];
    await execa('iptables', args, { reject: how === 'add' });
  }
}

function cidrsOverlap(a: string, b: string): boolean {
  const parse = (cidr: string): [number, number] => {
    const [ip = '', len = '32'] = cidr.split('/');
    const n = ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
    return [n, Number(len)];
  };
  const [na, la] = parse(a);
  const [nb, lb] = parse(b);
  const bits = Math.min(la, lb);
  const block = 2 ** (32 - bits);
  return Math.floor(na / block) === Math.floor(nb / block);
}

async function waitUntilAnswering(
  paths: EnginePaths,
  exit: Promise<Result>,
  hasExited: () => boolean,
  timeoutMs: number,
  started: number,
): Promise<void> {
  while (true) {
    if (hasExited()) {
      const result = await exit;
      throw new Error(
        `dockerd exited during start-up (${result.signal ?? `exit ${result.exitCode ?? '?'}`}); its log ends:\n${await logTail(paths)}`,
      );
    }
    if (await pingSocket(paths.socket, 1_000)) return;
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `dockerd did not answer on ${paths.socket} within ${timeoutMs} ms; its log ends:\n${await logTail(paths)}`,
      );
    }
    await sleep(100);
  }
}

async function logTail(paths: EnginePaths, lines = 30): Promise<string> {
  const text = await readFile(paths.logFile, 'utf8').catch((error: Error) => `(no log: ${error.message})`);
  const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
  return tail === '' ? '(the log is empty)' : tail;
}

// ---------------------------------------------------------------------------------------------------------
// Operations

/** GET /_ping over the socket with a hard deadline (a frozen daemon accepts the connection and says nothing). */
function pingSocket(socket: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    // agent: false: no pooled keep-alive socket to a daemon that may be killed or frozen next.
    const req = request({ socketPath: socket, path: '/_ping', method: 'GET', agent: false }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200));
      res.on('error', () => done(false));
    });
    const timer = setTimeout(() => {
      req.destroy();
      done(false);
    }, timeoutMs);
    function done(ok: boolean): void {
      clearTimeout(timer);
      resolve(ok);
    }
    req.on('error', () => done(false));
    req.end();
  });
}

async function loadImages(paths: EnginePaths, refs: string[]): Promise<void> {
  if (refs.length === 0) return;
  try {
    // The source is the main engine as the test process sees it (its DOCKER_HOST, if any). Its stdout is the
    // image archive: streamed into the load, never buffered (hundreds of MB).
    await execa('docker', ['save', ...refs], { buffer: { stdout: false }, timeout: 600_000 }).pipe(
      'docker',
      ['load', '--quiet'],
      {
        env: clientEnv(paths),
        timeout: 600_000,
      },
    );
  } catch (error) {
    const e = error as { shortMessage?: string; stderr?: unknown; message: string };
    const stderr = typeof e.stderr === 'string' ? e.stderr.trim() : '';
    throw new Error(`loadImages(${refs.join(' ')}): ${e.shortMessage ?? e.message}${stderr ? `: ${stderr}` : ''}`, {
      cause: error,
    });
  }
  // `docker load` succeeds on an archive it only partly understood; make sure every name arrived.
  const check = await execa('docker', ['image', 'inspect', '--format', '{{.Id}}', ...refs], {
    env: clientEnv(paths),
    reject: false,
  });
  if (check.exitCode !== 0) throw new Error(`loadImages: not all of ${refs.join(' ')} arrived: ${check.stderr.trim()}`);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitForState(pid: number, wanted: (state: string) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const info = await readProc(pid);
    if (!info) throw new Error(`dockerd ${pid} is gone`);
    if (wanted(info.state)) return;
    await sleep(10);
  }
  throw new Error(`dockerd ${pid} did not become ${what} within 5 s`);
}

// ---------------------------------------------------------------------------------------------------------
// Clean-up

interface ProcInfo {
  pid: number;
  ppid: number;
  /** One letter, as in /proc/<pid>/stat: R, S, D, T (stopped), Z (zombie), … */
  state: string;
  startTime: string;
  /** argv joined by spaces. */
  cmdline: string;
}

async function readProc(pid: number): Promise<ProcInfo | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) is in parentheses and may contain spaces and parentheses: parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ').trim();
    // fields[0] is field 3 (state), fields[1] field 4 (ppid), fields[19] field 22 (starttime).
    return { pid, state: fields[0] ?? '?', ppid: Number(fields[1]), startTime: fields[19] ?? '?', cmdline };
  } catch {
    return undefined;
  }
}

async function processTable(): Promise<ProcInfo[]> {
  const pids = (await readdir('/proc')).filter((e) => /^\d+$/.test(e)).map(Number);
  const infos = await Promise.all(pids.map(readProc));
  return infos.filter((p): p is ProcInfo => p !== undefined);
}

/** The pids in an engine's container cgroups, in every hierarchy (cgroup v1 has one per controller). */
async function cgroupDirs(paths: EnginePaths): Promise<string[]> {
  const dirs: string[] = [];
  for (const mount of await mountTable()) {
    if (mount.fstype !== 'cgroup' && mount.fstype !== 'cgroup2') continue;
    const dir = join(mount.mountPoint, paths.cgroupParent);
    if (
      await stat(dir).then(
        (s) => s.isDirectory(),
        () => false,
      )
    )
      dirs.push(dir);
  }
  return dirs;
}

/** A directory and all directories below it, deepest first. */
async function dirTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) if (entry.isDirectory()) out.push(...(await dirTree(join(dir, entry.name))));
  out.push(dir);
  return out;
}

async function cgroupPids(paths: EnginePaths): Promise<Set<number>> {
  const pids = new Set<number>();
  for (const root of await cgroupDirs(paths)) {
    for (const dir of await dirTree(root)) {
      const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
      for (const line of procs.split('\n')) if (line.trim() !== '') pids.add(Number(line));
    }
  }
  return pids;
}

/**
 * The engine's processes: those whose command line names its data-root or exec-root (dockerd, its containerd
 * `--config <exec-root>/containerd/…`, shims `-address <exec-root>/containerd/…`), those in its cgroups (the
 * containers', even re-parented), and all their descendants. Never this process or its ancestors (a test
 * runner whose own command line happened to mention the path).
 */
async function engineProcesses(paths: EnginePaths): Promise<{ pids: Set<number>; shims: ProcInfo[] }> {
  const table = await processTable();
  const live = table.filter((p) => p.state !== 'Z' && p.state !== 'X');
  const byPid = new Map(table.map((p) => [p.pid, p]));
  const protectedPids = new Set<number>();
  for (let p = byPid.get(process.pid); p && !protectedPids.has(p.pid); p = byPid.get(p.ppid)) protectedPids.add(p.pid);

  const markers = [`${paths.dataRoot}/`, `${paths.execRoot}/`, `=${paths.dataRoot}`, `=${paths.execRoot}`];
  const pids = new Set<number>(live.filter((p) => markers.some((m) => p.cmdline.includes(m))).map((p) => p.pid));
  const liveSet = new Set(live.map((p) => p.pid));
  for (const pid of await cgroupPids(paths)) if (liveSet.has(pid)) pids.add(pid);
  // Descendants, to a fixed point.
  for (let grew = true; grew;) {
    grew = false;
    for (const p of live) {
      if (!pids.has(p.pid) && pids.has(p.ppid)) {
        pids.add(p.pid);
        grew = true;
      }
    }
  }
  for (const pid of protectedPids) pids.delete(pid);
  const shims = live.filter((p) => pids.has(p.pid) && p.cmdline.includes('containerd-shim'));
  return { pids, shims };
}

interface MountInfo {
  mountPoint: string;
  fstype: string;
}

async function mountTable(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const unescape = (s: string): string =>
    s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [left = '', right = ''] = line.split(' - ');
    const mountPoint = left.split(' ')[4];
    const fstype = right.split(' ')[0];
    if (mountPoint !== undefined && fstype !== undefined) mounts.push({ mountPoint: unescape(mountPoint), fstype });
  }
  return mounts;
}

async function mountsUnder(base: string): Promise<string[]> {
  return (await mountTable()).map((m) => m.mountPoint).filter((mp) => mp === base || mp.startsWith(`${base}/`));
}

/** Container ids the engine's containerd knew, for the shims' socket names. */
async function containerIds(paths: EnginePaths, shims: ProcInfo[]): Promise<Array<{ namespace: string; id: string }>> {
  const ids: Array<{ namespace: string; id: string }> = [];
  for (const shim of shims) {
    const ns = /-namespace (\S+)/.exec(shim.cmdline)?.[1];
    const id = /-id (\S+)/.exec(shim.cmdline)?.[1];
    if (ns && id) ids.push({ namespace: ns, id });
  }
  const taskRoot = join(paths.execRoot, 'containerd', 'io.containerd.runtime.v2.task');
  for (const ns of await readdir(taskRoot).catch(() => [])) {
    for (const id of await readdir(join(taskRoot, ns)).catch(() => [])) ids.push({ namespace: ns, id });
  }
  return ids;
}

async function bridgeExists(bridge: string): Promise<boolean> {
  return (await execa('ip', ['link', 'show', bridge], { reject: false })).exitCode === 0;
}

/**
 * Removes everything of one engine. Order matters: processes first (they hold the mounts and would restart
 * one another: dockerd restarts a dead containerd), then mounts (rm -rf must never run through a live mount),
 * cgroups, shim sockets, the bridge, and the directory last (it names the engine for a later sweep).
 */
async function cleanupEngine(paths: EnginePaths): Promise<void> {
  const shimIds: Array<{ namespace: string; id: string }> = [];

  // 1. Processes. Everything is collected before anything is killed (a dead shim's children are re-parented
  // and no longer recognisable by ancestry; the cgroups still find them), and rounds repeat until none is left.
  for (let round = 0; ; round++) {
    const { pids, shims } = await engineProcesses(paths);
    shimIds.push(...(await containerIds(paths, shims)));
    if (pids.size === 0) break;
    if (round >= 20) throw new Error(`second engine ${paths.name}: processes survive SIGKILL: ${[...pids].join(' ')}`);
    for (const pid of pids) signal(pid, 'SIGKILL');
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      const states = await Promise.all([...pids].map(readProc));
      if (states.every((p) => p === undefined || p.state === 'Z' || p.state === 'X')) break;
      await sleep(20);
    }
  }
  shimIds.push(...(await containerIds(paths, [])));

  // 2. Mounts: overlay rootfs, shm, network namespaces, the data-root dockerd bind-mounts onto itself. Deepest
  // first; lazily if a plain unmount is refused; repeated because a mount point may be stacked.
  for (let round = 0; ; round++) {
    const mounts = await mountsUnder(paths.base);
    if (mounts.length === 0) break;
    if (round >= 10) throw new Error(`second engine ${paths.name}: cannot unmount ${mounts.join(' ')}`);
    for (const mp of mounts.sort((a, b) => b.length - a.length)) {
      const plain = await execa('umount', [mp], { reject: false });
      if (plain.exitCode !== 0) await execa('umount', ['-l', mp], { reject: false });
    }
  }

  // 3. Cgroups, deepest first (rmdir of a cgroup whose last task just died can briefly be refused: retry).
  for (const root of await cgroupDirs(paths)) {
    for (const dir of await dirTree(root)) {
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir);
          break;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (attempt >= 50)
            throw new Error(`second engine ${paths.name}: cannot remove cgroup ${dir}: ${code}`, { cause: error });
          await sleep(20);
        }
      }
    }
  }

  // 4. Sockets of killed shims, named sha256(<containerd address>/<namespace>/<id>).
  for (const { namespace, id } of shimIds) {
    const hash = createHash('sha256')
      .update(join(paths.containerdAddress, namespace, id))
      .digest('hex');
    await rm(join(shimSocketDir, hash), { force: true });
  }

  // 5. The bridge (its veths, if any, went with the containers' network namespaces) and its NAT rules, if any.
  if (await bridgeExists(paths.bridge)) {
    await forwardBridge(paths.bridge, 'remove');
    await execa('ip', ['link', 'del', paths.bridge]);
  }

  // 6. The directory, only once nothing is mounted below it.
  if ((await mountsUnder(paths.base)).length > 0)
    throw new Error(`second engine ${paths.name}: mounts reappeared under ${paths.base}`);
  // rm(1), not fs.rm: several times faster on an unpacked image's tens of thousands of files; and
  // --one-file-system refuses to cross into a mount, should one appear after the check above.
  await execa('rm', ['-rf', '--one-file-system', paths.base]);

  // Prove it.
  const left: string[] = [];
  const { pids } = await engineProcesses(paths);
  if (pids.size > 0) left.push(`processes ${[...pids].join(' ')}`);
  if ((await cgroupDirs(paths)).length > 0) left.push(`cgroups ${paths.cgroupParent}`);
  if (await bridgeExists(paths.bridge)) left.push(`bridge ${paths.bridge}`);
  if (
    await stat(paths.base).then(
      () => true,
      () => false,
    )
  )
    left.push(paths.base);
  if (left.length > 0) throw new Error(`second engine ${paths.name}: left behind: ${left.join('; ')}`);
}
