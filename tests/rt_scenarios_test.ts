/**
 * kumofs' rt/ regression suite (docs/kumofs.md §13) on the in-process cluster: each scenario kills and
 * restarts servers and managers while a RandomTester load runs through a gateway, and at the end
 * requires zero failed sets, zero wrong or missing gets and (rt/09) every stale `cas` answered
 * EXISTS. Beyond kumofs, keys written once before the load must survive every churn: read back
 * right, and held by every owner in the write ring. Iterations: 3, or `KUMO_RT_ITERATIONS`;
 * victims are chosen from the printed seed (`KUMO_RT_SEED` replays the choices).
 */
import assert from "node:assert/strict";
import { formatAddress, type NodeAddress } from "../core/address.ts";
import type { Manager } from "../roles/manager/manager.ts";
import type { Server } from "../roles/server/server.ts";
import { TestCluster } from "./helpers/cluster.ts";
import {
  CasChecker,
  chooseSeed,
  describeFailures,
  type LoadFailure,
  type LoadSummary,
  RandomLoad,
  seededRandom,
  shuffled,
} from "./helpers/load.ts";
import { StaticKeys } from "./helpers/static_keys.ts";

const ITERATIONS = iterationsFromEnv();
const SEED = chooseSeed();
/** Keys written once before the load: a copy lost in a replace stays lost and is seen. */
const STATIC_KEYS = 1000;

function iterationsFromEnv(): number {
  const text = Deno.env.get("KUMO_RT_ITERATIONS");
  if (text === undefined || text === "") return 3;
  const count = Number(text);
  if (!Number.isInteger(count) || count < 1) {
    throw new Error(`KUMO_RT_ITERATIONS must be a positive integer, got ${text}`);
  }
  return count;
}

interface Churn {
  readonly cluster: TestCluster;
  readonly random: () => number;
  /** One line of what this iteration did, printed with the scenario's progress. */
  note(text: string): void;
}

interface Scenario {
  readonly id: number;
  readonly name: string;
  /** kumofs' rt/ script, or a scenario kumo adds. */
  readonly origin?: "rt" | "kumo";
  readonly managers: 1 | 2;
  readonly servers: number;
  /** One iteration of kills and restarts; returns once the cluster has settled again. */
  churn(churn: Churn): Promise<void>;
  /** rt/09: a CAS round before every churn and one after the last. */
  readonly cas?: boolean;
}

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)];
}

function name(address: NodeAddress): string {
  return formatAddress(address);
}

/** kill → "lost node" → restart with an empty store (rt/ renames the old file away). */
async function killServer(cluster: TestCluster, server: Server): Promise<NodeAddress> {
  const address = await cluster.kill(server);
  await cluster.waitForLost(address);
  return address;
}

/** rt's restart_srv: start it again empty, attach, wait for "replace finished". */
async function restartAndAttach(
  cluster: TestCluster,
  address: NodeAddress,
  via?: Manager,
): Promise<void> {
  await cluster.restartServer(address);
  await cluster.attach({ via });
  await cluster.waitForReplaceFinished();
}

async function restartManager(cluster: TestCluster, address: NodeAddress): Promise<void> {
  const manager = cluster.restartManager(address);
  await cluster.waitForManagerCaughtUp(manager);
}

/** rt/07 and rt/08: a second server dies while the attach of the first one is copying. */
async function killTwoWhileReplacing({ cluster, random, note }: Churn): Promise<void> {
  const [first, second] = shuffled(cluster.servers, random);
  const manager = pick(cluster.managers, random);
  const firstAddress = await killServer(cluster, first);
  await cluster.restartServer(firstAddress);
  await cluster.waitForNewcomer(firstAddress, manager);
  {
    using copyStarted = cluster.watchReplacePhase("copy");
    await cluster.attach({ via: manager });
    await copyStarted.wait();
  }
  const secondAddress = await killServer(cluster, second);
  await cluster.restartServer(secondAddress);
  await cluster.waitForNewcomer(secondAddress, manager);
  await cluster.attach({ via: manager });
  await cluster.waitForReplaceFinished();
  note(
    `killed ${name(firstAddress)}, attached it via ${name(manager.address)}, killed ` +
      `${name(secondAddress)} during the copy, attached again`,
  );
}

const SCENARIOS: Scenario[] = [
  {
    id: 1,
    name: "mgr1_kill_1_srv",
    managers: 1,
    servers: 3,
    async churn({ cluster, random, note }) {
      const address = await killServer(cluster, pick(cluster.servers, random));
      await restartAndAttach(cluster, address);
      note(`killed and re-attached ${name(address)}`);
    },
  },
  {
    id: 2,
    name: "mgr2_kill_1_mgr",
    managers: 2,
    servers: 3,
    async churn({ cluster, random, note }) {
      const address = await cluster.killManager(pick(cluster.managers, random));
      await restartManager(cluster, address);
      note(`killed and restarted manager ${name(address)}`);
    },
  },
  {
    id: 3,
    name: "mgr1_kill_2_srvs",
    managers: 1,
    servers: 3,
    async churn({ cluster, random, note }) {
      const victims = shuffled(cluster.servers, random).slice(0, 2);
      const addresses = await Promise.all(victims.map((server) => cluster.kill(server)));
      for (const address of addresses) await cluster.waitForLost(address);
      for (const address of addresses) await restartAndAttach(cluster, address);
      note(`killed ${addresses.map(name).join(" and ")} at once, re-attached one by one`);
    },
  },
  {
    id: 4,
    name: "mgr2_kill_2_srvs",
    managers: 2,
    servers: 3,
    async churn({ cluster, random, note }) {
      const victims = shuffled(cluster.servers, random).slice(0, 2);
      const addresses = await Promise.all(victims.map((server) => cluster.kill(server)));
      for (const address of addresses) await cluster.waitForLost(address);
      for (const address of addresses) {
        await restartAndAttach(cluster, address, pick(cluster.managers, random));
      }
      note(`killed ${addresses.map(name).join(" and ")} at once, re-attached one by one`);
    },
  },
  {
    id: 5,
    name: "mgr2_kill_1_srv_1_mgr",
    managers: 2,
    servers: 3,
    async churn({ cluster, random, note }) {
      const [manager, partner] = shuffled(cluster.managers, random);
      const managerAddress = await cluster.killManager(manager);
      const serverAddress = await killServer(cluster, pick(cluster.servers, random));
      await restartManager(cluster, managerAddress);
      await restartAndAttach(cluster, serverAddress, partner);
      note(`killed manager ${name(managerAddress)} then server ${name(serverAddress)}`);
    },
  },
  {
    id: 6,
    name: "mgr2_kill_1_mgr_1_srv",
    managers: 2,
    servers: 3,
    async churn({ cluster, random, note }) {
      const [manager, partner] = shuffled(cluster.managers, random);
      const server = pick(cluster.servers, random);
      const serverAddress = await cluster.kill(server);
      const managerAddress = await cluster.killManager(manager);
      await cluster.waitForLost(serverAddress);
      await restartAndAttach(cluster, serverAddress, partner);
      await restartManager(cluster, managerAddress);
      note(`killed server ${name(serverAddress)} then manager ${name(managerAddress)}`);
    },
  },
  {
    id: 7,
    name: "mgr2_kill_2_srvs_while_replacing",
    managers: 2,
    servers: 3,
    churn: killTwoWhileReplacing,
  },
  {
    id: 8,
    name: "mgr2_kill_2_srvs_while_replacing2",
    managers: 2,
    servers: 6,
    churn: killTwoWhileReplacing,
  },
  {
    id: 9,
    name: "cas",
    managers: 1,
    servers: 3,
    cas: true,
    async churn({ cluster, random, note }) {
      const address = await killServer(cluster, pick(cluster.servers, random));
      await restartAndAttach(cluster, address);
      note(`killed and re-attached ${name(address)}`);
    },
  },
  {
    // rt/09's restart_srv does not wait for "lost node": a server that crashes and comes back
    // empty at once may reconnect before any manager declares it lost.
    id: 10,
    origin: "kumo",
    name: "restart_empty_before_lost",
    managers: 1,
    servers: 3,
    async churn({ cluster, random, note }) {
      const address = await cluster.kill(pick(cluster.servers, random));
      await cluster.restartServer(address);
      await cluster.attach();
      await cluster.waitForReplaceFinished();
      note(`killed ${name(address)} and restarted it empty at once, then attached`);
    },
  },
];

/**
 * After a churn has settled: every key written once reads back right through the gateway, and
 * every active owner in the write ring holds its copy (else the next failure could lose it).
 */
async function staticDamage(
  cluster: TestCluster,
  statics: StaticKeys,
  port: number,
): Promise<string[]> {
  const found: string[] = [];
  const wrong = await statics.wrongValues(port);
  if (wrong.length > 0) {
    found.push(`${wrong.length} keys written once read wrong: ${wrong.slice(0, 3).join(", ")}`);
  }
  const { missing } = statics.placement(cluster.manager.writeHashSpace, cluster.servers);
  if (missing.length > 0) {
    found.push(`${missing.length} owner copies missing: ${missing.slice(0, 3).join(", ")}`);
  }
  return found;
}

/** kumofs' script name, e.g. "rt/01_mgr1_kill_1_srv", or "kumo/10_…" for kumo's own. */
function labelOf(scenario: Scenario): string {
  return `${scenario.origin ?? "rt"}/${String(scenario.id).padStart(2, "0")}_${scenario.name}`;
}

async function runScenario(scenario: Scenario): Promise<void> {
  const label = labelOf(scenario);
  console.log(`${label}: seed=${SEED} (replay: KUMO_RT_SEED=${SEED}) iterations=${ITERATIONS}`);
  const random = seededRandom((SEED ^ Math.imul(scenario.id, 0x9e3779b9)) >>> 0);
  const startedMs = Date.now();
  await using cluster = await TestCluster.start({
    managers: scenario.managers,
    servers: scenario.servers,
  });
  const gateway = await cluster.startGateway();
  const statics = new StaticKeys(STATIC_KEYS);
  await statics.write(gateway.textPort!);
  const damage: string[] = [];
  // The roles' recent log lines and rings when the first failure happened: the end state
  // rarely explains it.
  let atFirstFailure = "";
  const onFirstFailure = (failure?: LoadFailure) =>
    atFirstFailure ||= (failure ? `${cluster.describeKey(failure.key)}\n` : "") +
      cluster.describe();
  const load = RandomLoad.start({ port: gateway.textPort!, seed: SEED, onFirstFailure });
  let cas: CasChecker | undefined;
  let summary: LoadSummary;
  let churnError: unknown;
  try {
    if (scenario.cas) cas = await CasChecker.start({ port: gateway.textPort!, onFirstFailure });
    for (let iteration = 1; iteration <= ITERATIONS; iteration++) {
      // kumofs sleeps here; we wait until the load has run against the settled cluster.
      await load.waitForRounds(1);
      await cas?.round();
      const notes: string[] = [];
      await scenario.churn({ cluster, random, note: (text) => notes.push(text) });
      const found = await staticDamage(cluster, statics, gateway.textPort!);
      if (found.length > 0) onFirstFailure();
      damage.push(...found.map((text) => `iteration ${iteration}: ${text}`));
      console.log(
        `${label}: iteration ${iteration}/${ITERATIONS} +${Date.now() - startedMs}ms: ` +
          notes.join("; "),
      );
    }
    await load.waitForRounds(1);
    await cas?.round();
  } catch (error) {
    churnError = error;
  } finally {
    summary = await load.stop();
    cas?.close();
  }
  const loadLine = `load: ${summary.rounds} rounds, ${summary.sets} sets, ${summary.gets} gets,` +
    ` ${summary.failureCount} failure(s)`;
  const loadReport = `${loadLine}; ${describeFailures(summary.failures)}` +
    (atFirstFailure ? `\ncluster at the first failure:\n${atFirstFailure}` : "");
  if (churnError) {
    throw new Error(
      `${label}: ${churnError instanceof Error ? churnError.message : churnError}\n${loadReport}`,
      { cause: churnError },
    );
  }
  console.log(`${label}: done in ${Date.now() - startedMs}ms; ${loadLine}`);
  assert.equal(summary.failureCount, 0, `${label}: ${loadReport}`);
  assert.deepEqual(
    damage,
    [],
    `${label}: keys written once were lost\ncluster at the first failure:\n${atFirstFailure}`,
  );
  assert.ok(summary.rounds >= ITERATIONS + 1, `${label}: the load ran (${summary.rounds} rounds)`);
  if (cas) {
    const rounds = ITERATIONS + 1;
    console.log(
      `${label}: stale cas answered EXISTS ${cas.staleCasExists}/${cas.staleCasTried} times`,
    );
    assert.equal(
      cas.failureCount,
      0,
      `${label}: CAS ${describeFailures(cas.failures)}\ncluster at the first failure:\n` +
        atFirstFailure,
    );
    assert.equal(cas.staleCasTried, cas.keyCount * rounds, `${label}: every key was checked`);
    assert.equal(cas.staleCasExists, cas.staleCasTried, `${label}: every stale cas was EXISTS`);
  }
}

for (const scenario of SCENARIOS) {
  const topology = `${scenario.managers} manager(s), ${scenario.servers} servers`;
  Deno.test(`${labelOf(scenario)}: ${topology}, load without a failure`, () =>
    runScenario(scenario));
}
