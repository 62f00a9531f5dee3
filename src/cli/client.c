/* placeholder */ static int unused_client;
