# bash completion for skipq -*- shell-script -*-
#
# Commands, subcommands and options come from the --help texts of the
# skipq being completed (`skipq --help`, `skipq CMD --help`), read once
# per shell: whatever that binary knows is offered, and this file never
# lists a command or an option by hand.
#
#   . dist/completions/skipq.bash     (installed as
#                                      share/bash-completion/completions/skipq)

# _skipq_help BIN [CMD]: the help text, cached in _skipq_cache
_skipq_help()
{
    local key="$1 $2"
    if [[ -z ${_skipq_cache[$key]+set} ]]; then
        _skipq_cache[$key]=$("$1" ${2:+"$2"} --help 2>/dev/null)
    fi
    REPLY=${_skipq_cache[$key]}
}

_skipq()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local bin=${COMP_WORDS[0]} cmd='' sub='' i w
    [[ ${_skipq_cache@a} == *A* ]] || declare -gA _skipq_cache
    command -v "$bin" >/dev/null 2>&1 || bin=skipq

    # option values the help texts name as a list or a file
    case $prev in
        --config) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames; return ;;
        --log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
        --log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
        --database) return ;;
    esac

    # the command is the first word that is not an option or its value
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            --config|--database|--log-level|--log-format) ((i++)) ;;
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi ;;
        esac
    done

    _skipq_help "$bin"
    local main=$REPLY common
    # the options every command takes: the section of skipq --help after
    # "options"
    common=$(awk '/^options/ { on = 1 } on' <<<"$main" | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$common" -- "$cur"))
        else
            # "commands:" lists "  NAME   what it does" up to a blank line
            COMPREPLY=($(compgen -W "help $(awk '/^commands:/ { on = 1; next }
                on && /^$/ { exit } on { print $1 }' <<<"$main")" -- "$cur"))
        fi
        return
    fi

    _skipq_help "$bin" "$cmd"
    local help=$REPLY
    if [[ $cur == -* ]]; then
        # the command's options and those every command takes
        COMPREPLY=($(compgen -W "$( (grep -o -- '--[a-z][a-z0-9-]*' <<<"$help"
            echo "$common") | sort -u)" -- "$cur"))
        return
    fi
    if [[ -z $sub ]]; then
        # subcommands: the lower-case words after "skipq CMD " in the
        # usage lines (jobs ls, queue pause, retry|cancel, ...)
        local subs
        subs=$(grep -o -- "skipq $cmd [a-z][a-z|-]*" <<<"$help" |
            sed "s/^skipq $cmd //" | tr '|' '\n' | sort -u)
        if [[ -n $subs ]]; then
            COMPREPLY=($(compgen -W "$subs" -- "$cur"))
            return
        fi
    fi
    [[ $cmd == help ]] && COMPREPLY=($(compgen -W "$(awk '/^commands:/ { on = 1; next }
        on && /^$/ { exit } on { print $1 }' <<<"$main")" -- "$cur")) && return
    COMPREPLY=($(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
}
complete -F _skipq skipq
