export { freePorts } from '../../src/cli/local-cluster.js';
