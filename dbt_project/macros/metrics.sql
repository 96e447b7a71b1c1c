{#- Metric helpers shared by the marts; their definitions are in docs/metrics.md. -#}

{% macro safe_divide(numerator, denominator) -%}
    {#- A rate is NULL, not 0, when its denominator is 0. -#}
    cast({{ numerator }} as double) / nullif({{ denominator }}, 0)
{%- endmacro %}


{% macro seconds_between(start_at, end_at) -%}
    {{ return(adapter.dispatch('seconds_between', 'evo_voice')(start_at, end_at)) }}
{%- endmacro %}

{% macro default__seconds_between(start_at, end_at) -%}
    extract(epoch from ({{ end_at }} - {{ start_at }}))
{%- endmacro %}

{% macro duckdb__seconds_between(start_at, end_at) -%}
    {#- Whole microseconds first: exact, and independent of the session time zone (DuckDB's
        timestamptz subtraction counts calendar days in the session zone). -#}
    (epoch_us({{ end_at }}) - epoch_us({{ start_at }})) / 1000000.0
{%- endmacro %}


{% macro local_timestamp(column) -%}
    {#- Wall-clock time in var('evo_voice_timezone') of a UTC timestamptz. -#}
    timezone('{{ var("evo_voice_timezone") }}', {{ column }})
{%- endmacro %}
