export { cubic, Cubic, type CubicOptions } from './cubic.js';
