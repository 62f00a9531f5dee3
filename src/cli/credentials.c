/* placeholder */ static int unused_credentials;
