{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_outdated_days(ref('fct_sessions')) }}"
    )
}}

with

answered_calls as (

    select * from {{ ref('fct_sessions') }}
    where
        channel = 'Voice'
        and was_missed is not true
        and duration_seconds is not null
        {% if is_incremental() %}
        and session_date not in (select distinct session_date from {{ this }})
        {% endif %}

),

final as (

    select
        session_date,
        account_id,
        direction,
        count(*) as answered_calls,
        avg(duration_seconds) as avg_duration_seconds,
        quantile_cont(duration_seconds, 0.5) as median_duration_seconds,
        quantile_cont(duration_seconds, 0.9) as p90_duration_seconds,
        max(duration_seconds) as max_duration_seconds,
        sum(duration_seconds) as total_duration_seconds,
        max(last_synced_at) as last_synced_at
    from answered_calls
    group by session_date, account_id, direction

)

select * from final
