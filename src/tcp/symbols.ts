/** Private state shared between modules, under symbols rather than underscore fields. */
export const kRaw: unique symbol = Symbol('sockguard.raw');
/** The TLS socket that continues a plain socket's connection (STARTTLS), set on the plain socket. */
export const kOver: unique symbol = Symbol('sockguard.over');
