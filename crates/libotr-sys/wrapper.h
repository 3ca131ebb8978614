/* The public libotr 4.x headers the safe wrapper uses, plus libgcrypt's. */
#include <stdio.h>
#include <gcrypt.h>
#include <libotr/proto.h>
#include <libotr/version.h>
#include <libotr/userstate.h>
#include <libotr/context.h>
#include <libotr/message.h>
#include <libotr/privkey.h>
#include <libotr/instag.h>
#include <libotr/tlv.h>
#include <libotr/b64.h>
