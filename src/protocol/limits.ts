/** libassuan's ASSUAN_LINELENGTH: a line is accepted iff its LF lies within the first 1002 bytes. */
export const MAX_LINE_BYTES = 1002;

/** The name we put in the `<source>` part of ERR lines the proxy writes itself. */
export const PROXY_SOURCE_NAME = 'assuan-proxy';
