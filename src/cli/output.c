/* placeholder */ static int unused_output;
