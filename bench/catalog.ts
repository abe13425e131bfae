// Every workload by the name the bench's scripts take on their command line.
import { aiSdkWorkload } from './ai-sdk.js';
import { appShape } from './app.js';
import { asyncLoopWorkload, plainXStateWorkload } from './baselines.js';
import type { Workload } from './measure.js';
import { runchartWorkload } from './workloads.js';

/** The app workload's users and sessions at full scale (`bench/app.ts`). */
export const appPeople = { principals: 100, sessions: 1_000 };

export const workloadsByName: Record<string, () => Workload> = {
  memory: () => runchartWorkload('memory'),
  lowdb: () => runchartWorkload('lowdb'),
  'app-memory': () => runchartWorkload('memory', appShape(appPeople)),
  'app-lowdb': () => runchartWorkload('lowdb', appShape(appPeople)),
  /** On PostgreSQL (`RUNCHART_BENCH_DATABASE_URL`), each in a fresh schema: for `bench:side-by-side` and `profile.js`, not in `npm run bench`. */
  postgres: () => runchartWorkload('postgres'),
  'app-postgres': () => runchartWorkload('postgres', appShape(appPeople)),
  loop: asyncLoopWorkload,
  xstate: plainXStateWorkload,
  'ai-sdk': aiSdkWorkload,
};
