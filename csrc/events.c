/*
 * Events: subscriptions to the conntrack multicast groups.
 */
#include "lct.h"

void lct_events_open(lua_State *L)
{
	(void)L;
}
