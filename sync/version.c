/* version.c - the sync library's version query (fieldvault_sync.h). */
#include "fieldvault_sync.h"

int fv_protocol_version(void) { return FV_PROTOCOL_VERSION; }
