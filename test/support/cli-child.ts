// Runs the runchart CLI from source in a child process, for tests that need a real process (serve, signals).
import { main } from '../../src/cli/main.js';

await main(process.argv.slice(2));
