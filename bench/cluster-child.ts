// `runchart <args>` from the bench's own build, for the worker processes of `npm run bench:cluster`.
import { main } from '../src/cli/main.js';

await main(process.argv.slice(2));
