/** Private state shared between modules, under symbols rather than underscore fields. */
export const kRaw: unique symbol = Symbol('sockguard.raw');
