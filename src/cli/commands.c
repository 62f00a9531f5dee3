/* placeholder */ static int unused_commands;
