/**
 * The command lines of kumo-manager, kumo-server and kumo-gateway (docs/kumofs.md §1.4, the
 * kumo-server manual) and the typed configs they produce. Hostnames are kept as given;
 * the roles resolve them to IPv4 at start-up.
 *
 * Deliberate differences from kumofs 0.4.13:
 * - `-k`/`--keepalive-interval` takes effect (kumofs overwrote it with 2 s).
 * - `-TW`/`-TR` are accepted for compatibility and have no effect (one event loop).
 * - `-F`/`-E` are accepted and have no effect: flags and expiry are always stored.
 * - The gateway has `-I`/`--max-item-size`, the value size limit, like memcached's `-I`.
 */

import {
  CLUSTER_DEFAULTS,
  GATEWAY_DEFAULTS,
  MANAGER_DEFAULTS,
  SERVER_DEFAULTS,
} from "./defaults.ts";
import { formatAddress, type NodeAddress } from "./address.ts";
import {
  type CommandSpec,
  optionDisplayName,
  optionError,
  type OptionTable,
  type OptionValues,
  parseOptions,
  type ParseResult,
} from "./options.ts";

export const DEFAULT_PORTS = {
  manager: 19700,
  server: 19800,
  stream: 19900,
  text: 11411,
  binary: 11511,
  cloudy: 11611,
} as const;

/** `--metrics` given without a port (kumofs had no HTTP listener; 9100 is node_exporter's). */
export const DEFAULT_METRICS_PORT = 9107;

/** Longer periods would overflow timers (2^31 ms) and are never meant. */
const MAX_PERIOD_SECONDS = 86_400;
/** Below a millisecond the conversion to ms would round to zero. */
const MIN_PERIOD_SECONDS = 0.001;
const MAX_RETRIES = 1_000_000;

/**
 * `--test-break` names: `ack-before-replicate` makes the coordinator answer a write once it is
 * in its own store, while replication goes on in the background (what `-As` asks for per
 * request, here for every write), so that the multi-host checkers can be shown to catch it.
 */
export const TEST_BREAKS = ["ack-before-replicate"] as const;
export type TestBreak = typeof TEST_BREAKS[number];
/** kumofs orders versions by their counters within 5 s (clock_time.ts); a skew must stay inside. */
const MAX_TEST_CLOCK_SKEW_SECONDS = 4.999;

function seconds(description: string, fallback: number, short?: string, long?: string) {
  return {
    kind: "float",
    short,
    long,
    valueName: "seconds",
    default: fallback,
    min: MIN_PERIOD_SECONDS,
    max: MAX_PERIOD_SECONDS,
    description,
  } as const;
}

function count(short: string, long: string, fallback: number, min: number, description: string) {
  return {
    kind: "integer",
    short,
    long,
    valueName: "number",
    default: fallback,
    min,
    max: MAX_RETRIES,
    description,
  } as const;
}

/** Options every daemon has; the clock interval default differs per role. */
function commonOptions(clockIntervalSeconds: number) {
  return {
    keepaliveInterval: seconds(
      "keepalive interval in seconds",
      CLUSTER_DEFAULTS.keepaliveIntervalMs / 1000,
      "-k",
      "--keepalive-interval",
    ),
    connectTimeout: seconds(
      "connect timeout in seconds",
      CLUSTER_DEFAULTS.connectTimeoutMs / 1000,
      "-Ys",
      "--connect-timeout",
    ),
    connectRetryLimit: count(
      "-Yn",
      "--connect-retry-limit",
      CLUSTER_DEFAULTS.connectRetryLimit,
      0,
      "connect retry limit",
    ),
    clockInterval: seconds(
      "clock interval in seconds (period of the RPC timeout check)",
      clockIntervalSeconds,
      "-Ci",
      "--clock-interval",
    ),
    writeThreads: {
      ...count("-TW", "--write-threads", 2, 1, "number of write threads (accepted, no effect)"),
      max: 1024,
    },
    readThreads: {
      ...count("-TR", "--read-threads", 8, 1, "number of read threads (accepted, no effect)"),
      max: 1024,
    },
    log: {
      kind: "string",
      short: "-o",
      long: "--log",
      valueName: "path.log",
      description: "output logs to the file (- for stdout)",
    },
    binaryLog: {
      kind: "string",
      short: "-g",
      long: "--binary-log",
      valueName: "path.mpac",
      description: "enable binary log",
    },
    verbose: { kind: "boolean", short: "-v", long: "--verbose", description: "verbose log" },
    clusterKey: {
      kind: "string",
      long: "--cluster-key",
      valueName: "file",
      description:
        "file holding the shared cluster key (>= 16 bytes); peers without it are refused",
    },
    daemon: {
      kind: "string",
      short: "-d",
      long: "--daemon",
      valueName: "path.pid",
      description: "run as a daemon and write the pid file",
    },
    // Long form only: -M is the server's replace memory limit already.
    metrics: {
      kind: "listen",
      long: "--metrics",
      defaultPort: DEFAULT_METRICS_PORT,
      description:
        "serve Prometheus /metrics (manager: and a status page) over HTTP; off if absent",
    },
  } as const;
}

function managerAddress(short: string, long: string, description: string) {
  return {
    kind: "address",
    short,
    long,
    defaultPort: DEFAULT_PORTS.manager,
    description,
  } as const;
}

function listenOption(short: string, long: string, defaultPort: number, description: string) {
  return { kind: "listen", short, long, defaultPort, description } as const;
}

export const MANAGER_COMMAND = {
  program: "kumo-manager",
  synopsis: `-l <addr[:port=${DEFAULT_PORTS.manager}]> -p <addr[:port=${DEFAULT_PORTS.manager}]>`,
  options: {
    listen: {
      kind: "address",
      short: "-l",
      long: "--listen",
      defaultPort: DEFAULT_PORTS.manager,
      identity: true,
      required: true,
      description: "listen address (this node's identity)",
    },
    partner: managerAddress("-p", "--partner", "address of the partner manager"),
    autoReplace: {
      kind: "boolean",
      short: "-a",
      long: "--auto-replace",
      description: "enable auto replace",
    },
    replaceDelay: seconds(
      "delay time of auto replace in seconds",
      MANAGER_DEFAULTS.replaceDelayMs / 1000,
      "-Rs",
      "--replace-delay",
    ),
    ...commonOptions(MANAGER_DEFAULTS.clockIntervalMs / 1000),
  },
} as const satisfies CommandSpec<OptionTable>;

export const SERVER_COMMAND = {
  program: "kumo-server",
  synopsis: `-m <addr[:port=${DEFAULT_PORTS.manager}]> -p <addr[:port=${DEFAULT_PORTS.manager}]>` +
    ` -l <addr[:port=${DEFAULT_PORTS.server}]> -s <path.tch>`,
  options: {
    listen: {
      kind: "address",
      short: "-l",
      long: "--listen",
      defaultPort: DEFAULT_PORTS.server,
      identity: true,
      required: true,
      description: "listen address (this node's identity)",
    },
    streamListen: {
      kind: "port",
      short: "-L",
      long: "--stream-listen",
      default: DEFAULT_PORTS.stream,
      description: "listen port for replacing stream",
    },
    offerTmp: {
      kind: "string",
      short: "-f",
      long: "--offer-tmp",
      valueName: "dir",
      default: "/tmp",
      description: "path to temporary directory for replacing",
    },
    store: {
      kind: "string",
      short: "-s",
      long: "--store",
      valueName: "path.tch",
      required: true,
      description: "path to database",
    },
    manager1: { ...managerAddress("-m", "--manager1", "address of manager 1"), required: true },
    manager2: managerAddress("-p", "--manager2", "address of manager 2"),
    replicateSetRetry: count(
      "-S",
      "--replicate-set-retry",
      SERVER_DEFAULTS.replicateSetRetryLimit,
      0,
      "replicate set retry limit",
    ),
    replicateDeleteRetry: count(
      "-D",
      "--replicate-delete-retry",
      SERVER_DEFAULTS.replicateDeleteRetryLimit,
      0,
      "replicate delete retry limit",
    ),
    replaceMemoryLimit: {
      kind: "integer",
      short: "-M",
      long: "--replace-memory-limit",
      valueName: "MB",
      default: 0,
      min: 0,
      max: 1024 * 1024,
      description: "memory limit of a replace stream in MiB (0 = no limit)",
    },
    garbageMinTime: {
      kind: "integer",
      short: "-gN",
      long: "--garbage-min-time",
      valueName: "seconds",
      default: SERVER_DEFAULTS.garbageMinTimeSeconds,
      min: 0,
      max: 0x7fff_ffff,
      description: "minimum time to maintenance deleted key",
    },
    garbageMaxTime: {
      kind: "integer",
      short: "-gX",
      long: "--garbage-max-time",
      valueName: "seconds",
      default: SERVER_DEFAULTS.garbageMaxTimeSeconds,
      min: 1,
      max: 0x7fff_ffff,
      description: "maximum time to maintenance deleted key",
    },
    garbageMemLimit: {
      kind: "integer",
      short: "-gS",
      long: "--garbage-mem-limit",
      valueName: "kilobytes",
      default: SERVER_DEFAULTS.garbageMemoryLimitBytes / 1024,
      min: 1,
      max: 1024 * 1024 * 1024,
      description: "maximum memory usage to memory deleted key",
    },
    // Fault-injection switches for tools/multihost; off unless given, never for production.
    testClockSkewSeconds: {
      kind: "string",
      long: "--test-clock-skew-seconds",
      valueName: "seconds",
      description: "testing only: shift this server's clock by n seconds (|n| < 5)",
    },
    testBreak: {
      kind: "string",
      long: "--test-break",
      valueName: "name",
      description: `testing only: break kumo on purpose (${TEST_BREAKS.join(", ")})`,
    },
    ...commonOptions(SERVER_DEFAULTS.clockIntervalMs / 1000),
  },
} as const satisfies CommandSpec<OptionTable>;

const gatewayCommon = commonOptions(GATEWAY_DEFAULTS.clockIntervalMs / 1000);

export const GATEWAY_COMMAND = {
  program: "kumo-gateway",
  synopsis: `-m <addr[:port=${DEFAULT_PORTS.manager}]> -p <addr[:port=${DEFAULT_PORTS.manager}]>` +
    ` -t <[addr:]port=${DEFAULT_PORTS.text}>`,
  options: {
    manager1: { ...managerAddress("-m", "--manager1", "address of manager 1"), required: true },
    manager2: managerAddress("-p", "--manager2", "address of manager 2"),
    memprotoText: listenOption(
      "-t",
      "--memproto-text",
      DEFAULT_PORTS.text,
      "memcached text protocol listen address",
    ),
    memprotoBinary: listenOption(
      "-b",
      "--memproto-binary",
      DEFAULT_PORTS.binary,
      "memcached binary protocol listen address",
    ),
    cloudy: listenOption(
      "-c",
      "--cloudy",
      DEFAULT_PORTS.cloudy,
      "asynchronous memcached binary protocol listen address",
    ),
    saveFlag: {
      kind: "boolean",
      short: "-F",
      long: "--memproto-save-flag",
      description: "save flags on memcached protocol (accepted; flags are always saved)",
    },
    saveExpire: {
      kind: "boolean",
      short: "-E",
      long: "--memproto-save-expire",
      description: "save expire time on memcached protocol (accepted; always saved)",
    },
    getRetry: count("-G", "--get-retry", GATEWAY_DEFAULTS.getRetryLimit, 1, "get retry limit"),
    setRetry: count("-S", "--set-retry", GATEWAY_DEFAULTS.setRetryLimit, 0, "set retry limit"),
    deleteRetry: count(
      "-D",
      "--delete-retry",
      GATEWAY_DEFAULTS.deleteRetryLimit,
      0,
      "delete retry limit",
    ),
    renewThreshold: count(
      "-rn",
      "--renew-threshold",
      GATEWAY_DEFAULTS.renewThreshold,
      0,
      "hash space renew threshold",
    ),
    asyncReplicateSet: {
      kind: "boolean",
      short: "-As",
      long: "--async-replicate-set",
      description: "send response without waiting replication on set",
    },
    asyncReplicateDelete: {
      kind: "boolean",
      short: "-Ad",
      long: "--async-replicate-delete",
      description: "send response without waiting replication on delete",
    },
    localCache: {
      kind: "string",
      short: "-lc",
      long: "--local-cache",
      valueName: "name",
      description: "name of the local read cache",
    },
    keyPrefix: {
      kind: "string",
      short: "-k",
      long: "--key-prefix",
      valueName: "string",
      default: "",
      allowEmpty: true,
      description: "add prefix to keys",
    },
    maxItemSize: {
      kind: "bytes",
      short: "-I",
      long: "--max-item-size",
      valueName: "bytes",
      default: GATEWAY_DEFAULTS.maxItemBytes,
      defaultText: "1m",
      min: 1,
      max: 1024 * 1024 * 1024,
      description: "maximum value size (suffixes k and m allowed)",
    },
    authFile: {
      kind: "string",
      long: "--auth-file",
      valueName: "path",
      description: "require clients to log in: user:password lines (memcached -Y); " +
        "text: ASCII auth, binary: SASL PLAIN",
    },
    tlsCert: {
      kind: "string",
      long: "--tls-cert",
      valueName: "path",
      description: "TLS on the client ports: certificate chain, PEM (with --tls-key)",
    },
    tlsKey: {
      kind: "string",
      long: "--tls-key",
      valueName: "path",
      description: "TLS on the client ports: private key, PEM (with --tls-cert)",
    },
    ...gatewayCommon,
    // On the gateway the short -k is the key prefix (as in kumofs); only the long form remains.
    keepaliveInterval: { ...gatewayCommon.keepaliveInterval, short: undefined },
  },
} as const satisfies CommandSpec<OptionTable>;

/** Settings shared by the three daemons. Periods are in milliseconds. */
export interface CommonConfig {
  readonly verbose: boolean;
  /** Text log file; `-` means stdout without colours; absent means coloured stdout. */
  readonly logPath?: string;
  readonly binaryLogPath?: string;
  /** Run as a daemon and write this pid file. */
  readonly daemonPidPath?: string;
  /** `--cluster-key`: the file holding the shared cluster key (read by the role at start). */
  readonly clusterKeyPath?: string;
  readonly keepaliveIntervalMs: number;
  /** Period of the RPC timeout check (kumofs' "clock interval"). */
  readonly clockIntervalMs: number;
  readonly connectTimeoutMs: number;
  readonly connectRetryLimit: number;
  /** Accepted for compatibility; no effect. */
  readonly writeThreads: number;
  /** Accepted for compatibility; no effect. */
  readonly readThreads: number;
  /** `--metrics`: Prometheus metrics over HTTP (absent = off). */
  readonly metricsListen?: NodeAddress;
}

export interface ManagerConfig extends CommonConfig {
  /** Identity and listen port; the socket binds 0.0.0.0 on this port. */
  readonly listen: NodeAddress;
  readonly partner?: NodeAddress;
  readonly autoReplace: boolean;
  readonly replaceDelayMs: number;
}

export interface ServerConfig extends CommonConfig {
  /** Identity and cluster port; the socket binds 0.0.0.0 on this port. */
  readonly listen: NodeAddress;
  /** Replace-stream port, bound on the `listen` host. */
  readonly streamPort: number;
  readonly offerTmpDir: string;
  readonly storePath: string;
  readonly manager1: NodeAddress;
  readonly manager2?: NodeAddress;
  readonly replicateSetRetryLimit: number;
  readonly replicateDeleteRetryLimit: number;
  /** 0 = no limit. */
  readonly replaceMemoryLimitBytes: number;
  /** Already clamped to at most `garbageMaxTimeSeconds`. */
  readonly garbageMinTimeSeconds: number;
  readonly garbageMaxTimeSeconds: number;
  readonly garbageMemoryLimitBytes: number;
  /** Testing only: added to the server's wall clock (absent = 0). */
  readonly testClockSkewSeconds?: number;
  /** Testing only: a deliberate bug (absent = none). */
  readonly testBreak?: TestBreak;
}

export interface GatewayConfig extends CommonConfig {
  readonly manager1: NodeAddress;
  readonly manager2?: NodeAddress;
  readonly textListen?: NodeAddress;
  readonly binaryListen?: NodeAddress;
  readonly cloudyListen?: NodeAddress;
  /** Accepted for compatibility; flags are always stored. */
  readonly saveFlag: boolean;
  /** Accepted for compatibility; expiry is always stored. */
  readonly saveExpire: boolean;
  readonly getRetryLimit: number;
  readonly setRetryLimit: number;
  readonly deleteRetryLimit: number;
  readonly renewThreshold: number;
  readonly asyncReplicateSet: boolean;
  readonly asyncReplicateDelete: boolean;
  readonly localCache?: string;
  readonly keyPrefix: string;
  readonly maxItemBytes: number;
  /** Client credentials file (`--auth-file`); absent = clients need no login. */
  readonly authFilePath?: string;
  /** TLS certificate and key files (`--tls-cert`, `--tls-key`): both or neither. */
  readonly tlsCertPath?: string;
  readonly tlsKeyPath?: string;
}

type CommonValues = OptionValues<ReturnType<typeof commonOptions>>;

function toMs(secondsValue: number): number {
  return Math.round(secondsValue * 1000);
}

function commonConfig(values: CommonValues): CommonConfig {
  return {
    verbose: values.verbose,
    logPath: values.log,
    binaryLogPath: values.binaryLog,
    daemonPidPath: values.daemon,
    clusterKeyPath: values.clusterKey,
    keepaliveIntervalMs: toMs(values.keepaliveInterval),
    clockIntervalMs: toMs(values.clockInterval),
    connectTimeoutMs: toMs(values.connectTimeout),
    connectRetryLimit: values.connectRetryLimit,
    writeThreads: values.writeThreads,
    readThreads: values.readThreads,
    metricsListen: values.metrics,
  };
}

/** Drops keys whose value is undefined so configs compare cleanly and print without noise. */
function compact<T extends object>(config: T): T {
  return Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)) as T;
}

function sameEndpoint(a: NodeAddress, b: NodeAddress): boolean {
  return formatAddress(a) === formatAddress(b);
}

function mustDiffer(
  command: CommandSpec<OptionTable>,
  key: string,
  value: NodeAddress | undefined,
  otherKey: string,
  other: NodeAddress,
): ParseResult<never> | undefined {
  if (value === undefined || !sameEndpoint(value, other)) return undefined;
  const spec = command.options[key], otherSpec = command.options[otherKey];
  return optionError(
    command,
    `${optionDisplayName(spec)} "${formatAddress(value)}" must differ from ` +
      `${optionDisplayName(otherSpec)} "${formatAddress(other)}"`,
  );
}

export function parseManagerOptions(argv: readonly string[]): ParseResult<ManagerConfig> {
  const result = parseOptions(MANAGER_COMMAND, argv);
  if (result.kind !== "ok") return result;
  const v = result.values;
  const clash = mustDiffer(MANAGER_COMMAND, "partner", v.partner, "listen", v.listen);
  if (clash) return clash;
  return {
    kind: "ok",
    values: compact({
      ...commonConfig(v),
      listen: v.listen,
      partner: v.partner,
      autoReplace: v.autoReplace,
      replaceDelayMs: toMs(v.replaceDelay),
    }),
  };
}

export function parseServerOptions(argv: readonly string[]): ParseResult<ServerConfig> {
  const result = parseOptions(SERVER_COMMAND, argv);
  if (result.kind !== "ok") return result;
  const v = result.values;
  const clash = mustDiffer(SERVER_COMMAND, "manager2", v.manager2, "manager1", v.manager1);
  if (clash) return clash;
  const { testClockSkewSeconds: skewSpec, testBreak: breakSpec } = SERVER_COMMAND.options;
  const skew = v.testClockSkewSeconds === undefined ? undefined : Number(v.testClockSkewSeconds);
  if (
    skew !== undefined &&
    (!/^-?(\d+(\.\d*)?|\.\d+)$/.test(v.testClockSkewSeconds!) ||
      Math.abs(skew) > MAX_TEST_CLOCK_SKEW_SECONDS)
  ) {
    return optionError(
      SERVER_COMMAND,
      `invalid value for ${optionDisplayName(skewSpec)} ${JSON.stringify(v.testClockSkewSeconds)}` +
        `: must be a number of seconds between -${MAX_TEST_CLOCK_SKEW_SECONDS} and ` +
        `${MAX_TEST_CLOCK_SKEW_SECONDS}`,
    );
  }
  const testBreak = v.testBreak as TestBreak | undefined;
  if (testBreak !== undefined && !TEST_BREAKS.includes(testBreak)) {
    return optionError(
      SERVER_COMMAND,
      `invalid value for ${optionDisplayName(breakSpec)} ${JSON.stringify(v.testBreak)}: ` +
        `must be one of ${TEST_BREAKS.join(", ")}`,
    );
  }
  return {
    kind: "ok",
    values: compact({
      ...commonConfig(v),
      listen: v.listen,
      streamPort: v.streamListen,
      offerTmpDir: v.offerTmp,
      storePath: v.store,
      manager1: v.manager1,
      manager2: v.manager2,
      replicateSetRetryLimit: v.replicateSetRetry,
      replicateDeleteRetryLimit: v.replicateDeleteRetry,
      replaceMemoryLimitBytes: v.replaceMemoryLimit * 1024 * 1024,
      // As kumofs: a minimum above the maximum is clamped, not rejected.
      garbageMinTimeSeconds: Math.min(v.garbageMinTime, v.garbageMaxTime),
      garbageMaxTimeSeconds: v.garbageMaxTime,
      garbageMemoryLimitBytes: v.garbageMemLimit * 1024,
      testClockSkewSeconds: skew,
      testBreak,
    }),
  };
}

export function parseGatewayOptions(argv: readonly string[]): ParseResult<GatewayConfig> {
  const result = parseOptions(GATEWAY_COMMAND, argv);
  if (result.kind !== "ok") return result;
  const v = result.values;
  const clash = mustDiffer(GATEWAY_COMMAND, "manager2", v.manager2, "manager1", v.manager1);
  if (clash) return clash;
  if ((v.tlsCert === undefined) !== (v.tlsKey === undefined)) {
    const { tlsCert, tlsKey } = GATEWAY_COMMAND.options;
    return optionError(
      GATEWAY_COMMAND,
      `${optionDisplayName(tlsCert)} and ${optionDisplayName(tlsKey)} go together`,
    );
  }
  if (!v.memprotoText && !v.memprotoBinary && !v.cloudy) {
    const { memprotoText, memprotoBinary, cloudy } = GATEWAY_COMMAND.options;
    return optionError(
      GATEWAY_COMMAND,
      `at least one of ${optionDisplayName(memprotoText)}, ${optionDisplayName(memprotoBinary)}` +
        ` or ${optionDisplayName(cloudy)} is required`,
    );
  }
  return {
    kind: "ok",
    values: compact({
      ...commonConfig(v),
      manager1: v.manager1,
      manager2: v.manager2,
      textListen: v.memprotoText,
      binaryListen: v.memprotoBinary,
      cloudyListen: v.cloudy,
      saveFlag: v.saveFlag,
      saveExpire: v.saveExpire,
      getRetryLimit: v.getRetry,
      setRetryLimit: v.setRetry,
      deleteRetryLimit: v.deleteRetry,
      renewThreshold: v.renewThreshold,
      asyncReplicateSet: v.asyncReplicateSet,
      asyncReplicateDelete: v.asyncReplicateDelete,
      localCache: v.localCache,
      keyPrefix: v.keyPrefix,
      maxItemBytes: v.maxItemSize,
      authFilePath: v.authFile,
      tlsCertPath: v.tlsCert,
      tlsKeyPath: v.tlsKey,
    }),
  };
}
