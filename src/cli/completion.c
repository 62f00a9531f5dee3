/* SPDX-License-Identifier: Apache-2.0 */
/* Writes the bash and zsh completion scripts: a fixed driver per shell around tables generated
 * from args_commands and args_options. App names are completed from `emp list`, quality metrics
 * and shells from fixed lists, FILE from the file system. */
#include "completion.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "args.h"

static const char *const kind_names[] = {
    [ARGS_OPERAND_NONE] = "none",   [ARGS_OPERAND_APP] = "app",
    [ARGS_OPERAND_FILE] = "file",   [ARGS_OPERAND_METRIC] = "metric",
    [ARGS_OPERAND_SHELL] = "shell", [ARGS_OPERAND_OTHER] = "other",
};

const char *completion_shells(void)
{
    return "bash zsh";
}

/* Writes c for the inside of a single-quoted zsh word; escape_colon for the name part of a
 * _describe item, where ':' ends the name. */
static void put_char(FILE *out, char c, bool escape_colon)
{
    if (c == '\'')
        fputs("'\\''", out);
    else if (c == ':' && escape_colon)
        fputs("\\:", out);
    else
        fputc(c, out);
}

/* A _describe item 'name:description', single-quoted; the description's first line only. */
static void put_described(FILE *out, const char *name, const char *description)
{
    fputc('\'', out);
    for (const char *p = name; *p; p++)
        put_char(out, *p, true);
    fputc(':', out);
    for (const char *p = description; *p && *p != '\n'; p++)
        put_char(out, *p, false);
    fputc('\'', out);
}

/* The first words of the commands, each once: "create login ... update ...". */
static void put_first_words(FILE *out)
{
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const char *words = args_commands[i].words;
        size_t len = strcspn(words, " ");
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = strncmp(args_commands[j].words, words, len) == 0 &&
                   strcspn(args_commands[j].words, " ") == len;
        if (!seen)
            fprintf(out, "%s%.*s", i ? " " : "", (int)len, words);
    }
}

static void put_value_options(FILE *out, const char *separator)
{
    bool first = true;
    for (int i = 0; i < ARGS__OPTION_COUNT; i++) {
        const struct args_option *opt = &args_options[i];
        if (!opt->value_name)
            continue;
        fprintf(out, "%s--%s", first ? "" : separator, opt->name);
        if (opt->short_name)
            fprintf(out, "%s-%c", separator, opt->short_name);
        first = false;
    }
}

static void put_options(FILE *out, unsigned mask, bool global)
{
    bool first = true;
    for (int i = 0; i < ARGS__OPTION_COUNT; i++) {
        const struct args_option *opt = &args_options[i];
        if (global ? !opt->global : !(mask & (1u << i)))
            continue;
        fprintf(out, "%s--%s", first ? "" : " ", opt->name);
        first = false;
    }
}

static void put_operand_kinds(FILE *out, const struct args_command *cmd)
{
    for (unsigned i = 0; i < cmd->operands_max; i++)
        fprintf(out, "%s%s", i ? " " : "", kind_names[cmd->operands[i].kind]);
}

/* ---- bash ---- */

static void print_bash(FILE *out)
{
    fputs("# bash completion for emp. Load it with: source <(emp completion bash)\n"
          "_emp_apps() {\n"
          "    emp ${1:+--server \"$1\"} list 2>/dev/null | awk 'NR > 1 { print $1 }'\n"
          "}\n"
          "\n"
          "_emp() {\n"
          "    # split the line ourselves: COMP_WORDS breaks URLs apart at ':'\n"
          "    local line=\"${COMP_LINE:0:COMP_POINT}\" cur=\"\"\n"
          "    local -a words=() args=()\n"
          "    read -ra words <<<\"$line\"\n"
          "    if [[ \"$line\" != *[[:space:]] && ${#words[@]} -gt 1 ]]; then\n"
          "        cur=\"${words[${#words[@]}-1]}\"\n"
          "        unset 'words[${#words[@]}-1]'\n"
          "    fi\n"
          "    local server=\"\" prev=\"\" w i skip=0 ended=0\n"
          "    for ((i = 1; i < ${#words[@]}; i++)); do\n"
          "        w=\"${words[i]}\"\n"
          "        if ((skip)); then\n"
          "            skip=0\n"
          "            [[ \"$prev\" == --server ]] && server=\"$w\"\n"
          "            continue\n"
          "        fi\n"
          "        if ((ended)); then args+=(\"$w\"); continue; fi\n"
          "        case \"$w\" in\n"
          "        --) ended=1 ;;\n"
          "        ",
          out);
    put_value_options(out, "|");
    fputs(") skip=1 prev=\"$w\" ;;\n"
          "        --server=*) server=\"${w#*=}\" ;;\n"
          "        -[0-9]*) args+=(\"$w\") ;;\n"
          "        -?*) ;;\n"
          "        *) args+=(\"$w\") ;;\n"
          "        esac\n"
          "    done\n"
          "    COMPREPLY=()\n"
          "    if ((skip)); then\n"
          "        case \"$prev\" in\n"
          "        --output|-o) COMPREPLY=($(compgen -W \"table json\" -- \"$cur\")) ;;\n"
          "        esac\n"
          "        return 0\n"
          "    fi\n"
          "    case \"$cur\" in\n"
          "    --output=*) COMPREPLY=($(compgen -W \"table json\" -- \"${cur#*=}\")); return 0 ;;\n"
          "    esac\n"
          "    local globals=\"",
          out);
    put_options(out, 0, true);
    fputs("\"\n"
          "    local cmd=\"\" used=0\n"
          "    case \"${args[0]-} ${args[1]-}\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++)
        if (strchr(args_commands[i].words, ' '))
            fprintf(out, "    \"%s\") cmd=\"%s\" used=2 ;;\n", args_commands[i].words,
                    args_commands[i].words);
    fputs("    *)\n"
          "        case \"${args[0]-}\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++)
        if (!strchr(args_commands[i].words, ' '))
            fprintf(out, "        %s) cmd=%s used=1 ;;\n", args_commands[i].words,
                    args_commands[i].words);
    fputs("        esac\n"
          "        ;;\n"
          "    esac\n"
          "    if [[ -z \"$cmd\" ]]; then\n"
          "        if [[ \"$cur\" == -* ]]; then\n"
          "            COMPREPLY=($(compgen -W \"$globals\" -- \"$cur\"))\n"
          "        elif ((${#args[@]} == 0)); then\n"
          "            COMPREPLY=($(compgen -W \"",
          out);
    put_first_words(out);
    fputs("\" -- \"$cur\"))\n"
          "        elif ((${#args[@]} == 1)); then\n"
          "            case \"${args[0]}\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const char *space = strchr(args_commands[i].words, ' ');
        if (space)
            fprintf(out, "            %.*s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")) ;;\n",
                    (int)(space - args_commands[i].words), args_commands[i].words, space + 1);
    }
    fputs("            esac\n"
          "        fi\n"
          "        return 0\n"
          "    fi\n"
          "    local opts=\"\" kinds=\"\"\n"
          "    case \"$cmd\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const struct args_command *cmd = &args_commands[i];
        fprintf(out, "    \"%s\") opts=\"", cmd->words);
        put_options(out, cmd->options, false);
        fputs("\" kinds=\"", out);
        put_operand_kinds(out, cmd);
        fputs("\" ;;\n", out);
    }
    fputs("    esac\n"
          "    if [[ \"$cur\" == -* ]]; then\n"
          "        COMPREPLY=($(compgen -W \"$opts $globals\" -- \"$cur\"))\n"
          "        return 0\n"
          "    fi\n"
          "    local -a kind_list=($kinds)\n"
          "    case \"${kind_list[${#args[@]} - used]-}\" in\n"
          "    app) COMPREPLY=($(compgen -W \"$(_emp_apps \"$server\")\" -- \"$cur\")) ;;\n"
          "    file)\n"
          "        compopt -o filenames 2>/dev/null\n"
          "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
          "        ;;\n"
          "    metric) COMPREPLY=($(compgen -W \"latency throughput availability error_rate\" -- "
          "\"$cur\")) ;;\n"
          "    shell) COMPREPLY=($(compgen -W \"",
          out);
    fputs(completion_shells(), out);
    fputs("\" -- \"$cur\")) ;;\n"
          "    esac\n"
          "    return 0\n"
          "}\n"
          "complete -F _emp emp\n",
          out);
}

/* ---- zsh ---- */

static void print_zsh(FILE *out)
{
    fputs("#compdef emp\n"
          "# zsh completion for emp. Load it with: source <(emp completion zsh) (after compinit),\n"
          "# or save it as _emp in a directory of $fpath.\n"
          "_emp_apps() {\n"
          "    local -a apps\n"
          "    apps=(${(f)\"$(emp ${1:+--server \"$1\"} list 2>/dev/null | awk 'NR > 1 { print "
          "$1 }')\"})\n"
          "    compadd -a apps\n"
          "}\n"
          "\n"
          "_emp() {\n"
          "    local -a args commands options\n"
          "    local cur=\"${words[CURRENT]}\" server=\"\" prev=\"\" w i skip=0 ended=0\n"
          "    for ((i = 2; i < CURRENT; i++)); do\n"
          "        w=\"${words[i]}\"\n"
          "        if ((skip)); then\n"
          "            skip=0\n"
          "            [[ \"$prev\" == --server ]] && server=\"$w\"\n"
          "            continue\n"
          "        fi\n"
          "        if ((ended)); then args+=(\"$w\"); continue; fi\n"
          "        case \"$w\" in\n"
          "        (--) ended=1 ;;\n"
          "        (",
          out);
    put_value_options(out, "|");
    fputs(") skip=1 prev=\"$w\" ;;\n"
          "        (--server=*) server=\"${w#*=}\" ;;\n"
          "        (-[0-9]*) args+=(\"$w\") ;;\n"
          "        (-?*) ;;\n"
          "        (*) args+=(\"$w\") ;;\n"
          "        esac\n"
          "    done\n"
          "    if ((skip)); then\n"
          "        case \"$prev\" in\n"
          "        (--output|-o) compadd table json ;;\n"
          "        (--timeout) _message 'a duration such as 90s, 5m or 1h' ;;\n"
          "        (--server) _message 'the URL of emp-server' ;;\n"
          "        (*) _message 'a value' ;;\n"
          "        esac\n"
          "        return\n"
          "    fi\n"
          "    if [[ \"$cur\" == --output=* ]]; then\n"
          "        compset -P '--output='\n"
          "        compadd table json\n"
          "        return\n"
          "    fi\n"
          "    local global_options=(",
          out);
    for (int i = 0; i < ARGS__OPTION_COUNT; i++) {
        if (!args_options[i].global)
            continue;
        char name[64];
        snprintf(name, sizeof(name), "--%s", args_options[i].name);
        fputc(' ', out);
        put_described(out, name, args_options[i].help);
    }
    fputs(" )\n"
          "    local cmd=\"\" used=0\n"
          "    case \"${args[1]-} ${args[2]-}\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++)
        if (strchr(args_commands[i].words, ' '))
            fprintf(out, "    (\"%s\") cmd=\"%s\" used=2 ;;\n", args_commands[i].words,
                    args_commands[i].words);
    fputs("    (*)\n"
          "        case \"${args[1]-}\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++)
        if (!strchr(args_commands[i].words, ' '))
            fprintf(out, "        (%s) cmd=%s used=1 ;;\n", args_commands[i].words,
                    args_commands[i].words);
    fputs("        esac\n"
          "        ;;\n"
          "    esac\n"
          "    if [[ -z \"$cmd\" ]]; then\n"
          "        if [[ \"$cur\" == -* ]]; then\n"
          "            _describe 'option' global_options\n"
          "        elif ((${#args} == 0)); then\n"
          "            commands=(",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const char *words = args_commands[i].words;
        size_t len = strcspn(words, " ");
        char first[64];
        snprintf(first, sizeof(first), "%.*s", (int)len, words);
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = strncmp(args_commands[j].words, words, len) == 0 &&
                   strcspn(args_commands[j].words, " ") == len;
        if (seen)
            continue;
        fputc(' ', out);
        put_described(out, first, words[len] ? "(with a subcommand)" : args_commands[i].summary);
    }
    fputs(" )\n"
          "            _describe 'command' commands\n"
          "        elif ((${#args} == 1)); then\n"
          "            case \"${args[1]}\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const char *space = strchr(args_commands[i].words, ' ');
        if (!space)
            continue;
        fprintf(out, "            (%.*s) commands=(", (int)(space - args_commands[i].words),
                args_commands[i].words);
        put_described(out, space + 1, args_commands[i].summary);
        fputs(") ; _describe 'command' commands ;;\n", out);
    }
    fputs("            esac\n"
          "        fi\n"
          "        return\n"
          "    fi\n"
          "    local kinds=\"\"\n"
          "    case \"$cmd\" in\n",
          out);
    for (int i = 0; i < ARGS__COMMAND_COUNT; i++) {
        const struct args_command *cmd = &args_commands[i];
        fprintf(out, "    (\"%s\")\n        options=(", cmd->words);
        for (int o = 0; o < ARGS__OPTION_COUNT; o++) {
            if (!(cmd->options & (1u << o)))
                continue;
            char name[64];
            snprintf(name, sizeof(name), "--%s", args_options[o].name);
            fputc(' ', out);
            put_described(out, name, args_options[o].help);
        }
        fputs(" )\n        kinds=", out);
        fputc('"', out);
        put_operand_kinds(out, cmd);
        fputs("\" ;;\n", out);
    }
    fputs("    esac\n"
          "    if [[ \"$cur\" == -* ]]; then\n"
          "        options+=($global_options)\n"
          "        _describe 'option' options\n"
          "        return\n"
          "    fi\n"
          "    local -a kind_list=(${=kinds})\n"
          "    case \"${kind_list[${#args} - used + 1]-}\" in\n"
          "    (app) _emp_apps \"$server\" ;;\n"
          "    (file) _files ;;\n"
          "    (metric) compadd latency throughput availability error_rate ;;\n"
          "    (shell) compadd ",
          out);
    fputs(completion_shells(), out);
    fputs(" ;;\n"
          "    esac\n"
          "}\n"
          "\n"
          "if [[ \"${funcstack[1]-}\" == _emp ]]; then\n"
          "    _emp \"$@\"\n"
          "else\n"
          "    compdef _emp emp\n"
          "fi\n",
          out);
}

int completion_print(const char *shell, FILE *out)
{
    if (strcmp(shell, "bash") == 0)
        print_bash(out);
    else if (strcmp(shell, "zsh") == 0)
        print_zsh(out);
    else
        return -EINVAL;
    return 0;
}
