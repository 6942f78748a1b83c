# bash completion for qtbox and its applets (@QTBOX_APPLETS@).
#
# Nothing here lists an option: each completion asks the program itself,
# `APPLET [SUBCOMMAND...] --help`, and reads CLI11's "Options:",
# "Subcommands:" and "Positionals:" sections, so the words always match the
# binary that runs. A value is completed from the option's type name: file
# names for F, FILE, PATH, PEM, BZIMAGE, TAR, IN and OUT, directories for
# DIR, the choices of a type like `rfc9052|qingtian` or `TEXT:{p384,rsa2048}`.
#
# `qtbox --completion` prints this script with the applet list filled in;
# `qtbox --install DIR` installs it into <prefix>/share/bash-completion/
# completions/ when DIR is <prefix>/bin (man qtbox(1)). By hand:
#   source <(qtbox --completion)

# _qtbox_parse_help COMMAND...: the options, subcommands and positionals of
# `COMMAND... --help`, in _qtbox_options, _qtbox_types (option -> type name,
# for options that take a value), _qtbox_subcommands and _qtbox_positionals.
_qtbox_parse_help()
{
    _qtbox_options=()
    _qtbox_subcommands=()
    _qtbox_positionals=0
    _qtbox_types=()
    local line section= names type name
    while IFS= read -r line; do
        case $line in
        Options:) section=options; continue ;;
        Subcommands:) section=subcommands; continue ;;
        Positionals:) section=positionals; continue ;;
        "  "[![:space:]]*) ;;
        [![:space:]]*) section=; continue ;;
        *) continue ;;
        esac
        line=${line#  }
        # The first column ends at two blanks; its first word is the names
        # (-h,--help), the next the type name (F, N:UINT in [1 - 254]=2...).
        line=${line%%  *}
        case $section in
        options)
            names=${line%% *}
            type=
            [[ $line == *" "* ]] && type=${line#* } && type=${type%% *}
            case $type in Excludes:* | Needs:* | REQUIRED) type= ;; esac
            local IFS=,
            for name in $names; do
                [[ $name == -* ]] || continue
                _qtbox_options+=("$name")
                [[ -n $type ]] && _qtbox_types[$name]=$type
            done
            unset IFS
            ;;
        subcommands) _qtbox_subcommands+=("${line%% *}") ;;
        positionals) _qtbox_positionals=1 ;;
        esac
    done < <("$@" --help 2>/dev/null)
}

# _qtbox_complete_value TYPE CUR: COMPREPLY for an option's value.
_qtbox_complete_value()
{
    local type=$1 cur=$2 word list choices=() files=0 dirs=0
    case $type in
    *:\{*\}*)
        list=${type#*:\{}
        list=${list%%\}*}
        local IFS=,
        choices=($list)
        unset IFS
        ;;
    *\|*)
        local IFS='|'
        for word in ${type%%:*}; do
            case $word in
            DIR*) dirs=1 ;;
            F | FILE | PATH | PEM | BZIMAGE | TAR* | IN | OUT) files=1 ;;
            *) choices+=("$word") ;;
            esac
        done
        unset IFS
        ;;
    DIR*) dirs=1 ;;
    F | FILE | PATH | PEM | BZIMAGE | TAR* | IN | OUT) files=1 ;;
    esac
    COMPREPLY=()
    if ((${#choices[@]})); then
        COMPREPLY+=($(compgen -W "${choices[*]}" -- "$cur"))
    fi
    if ((files)); then
        compopt -o filenames 2>/dev/null
        local IFS=$'\n'
        COMPREPLY+=($(compgen -f -- "$cur"))
        unset IFS
    elif ((dirs)); then
        compopt -o filenames 2>/dev/null
        local IFS=$'\n'
        COMPREPLY+=($(compgen -d -- "$cur"))
        unset IFS
    fi
}

_qtbox()
{
    local cur=${COMP_WORDS[COMP_CWORD]} command=${COMP_WORDS[0]} start=1
    [[ $command == "~"* ]] && command=$HOME${command#"~"}
    local -a path=("$command")
    local -A _qtbox_types
    local -a _qtbox_options _qtbox_subcommands
    local _qtbox_positionals

    # qtbox itself: its own options, or an applet and its arguments.
    if [[ ${command##*/} == qtbox* ]]; then
        if ((COMP_CWORD == 1)); then
            COMPREPLY=($(compgen -W "@QTBOX_APPLETS@ --completion --help --install --list --version" -- "$cur"))
            return
        fi
        case ${COMP_WORDS[1]} in
        --install)
            if ((COMP_CWORD == 2)); then
                COMPREPLY=($(compgen -W "-s" -- "$cur"))
            fi
            compopt -o filenames 2>/dev/null
            local IFS=$'\n'
            COMPREPLY+=($(compgen -d -- "$cur"))
            return
            ;;
        -*) return ;;
        esac
        path+=("${COMP_WORDS[1]}")
        start=2
    fi

    # Follow the subcommands on the line; skip the values of options.
    _qtbox_parse_help "${path[@]}"
    local i word
    for ((i = start; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == -* && -n ${_qtbox_types[$word]+set} ]]; then
            # COMP_WORDBREAKS splits --option=value into three words.
            [[ ${COMP_WORDS[i + 1]} == = ]] && ((i++))
            ((i++))
        elif [[ $word != -* ]] && [[ " ${_qtbox_subcommands[*]} " == *" $word "* ]]; then
            path+=("$word")
            _qtbox_parse_help "${path[@]}"
        fi
    done

    # The value of the option before the cursor (--option value, --option=value).
    local option=${COMP_WORDS[COMP_CWORD - 1]}
    if [[ $cur == = ]]; then
        cur=
    elif [[ $option == = ]] && ((COMP_CWORD >= 2)); then
        option=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    if ((COMP_CWORD > start)) && [[ $option == -* && -n ${_qtbox_types[$option]+set} ]]; then
        _qtbox_complete_value "${_qtbox_types[$option]}" "$cur"
        return
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${_qtbox_options[*]}" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -W "${_qtbox_subcommands[*]}" -- "$cur"))
    if ((_qtbox_positionals)); then
        compopt -o filenames 2>/dev/null
        local IFS=$'\n'
        COMPREPLY+=($(compgen -f -- "$cur"))
    fi
}

complete -F _qtbox qtbox @QTBOX_APPLETS@
