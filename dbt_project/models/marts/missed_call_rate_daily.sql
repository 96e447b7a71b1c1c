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

voice_calls as (

    select * from {{ ref('fct_sessions') }}
    where
        channel = 'Voice'
        {% if is_incremental() %}
        and session_date not in (select distinct session_date from {{ this }})
        {% endif %}

),

daily as (

    select
        session_date,
        account_id,
        direction,
        count(*) as total_calls,
        count(case when was_missed then 1 end) as missed_calls,
        max(last_synced_at) as last_synced_at
    from voice_calls
    group by session_date, account_id, direction

),

final as (

    select
        session_date,
        account_id,
        direction,
        total_calls,
        missed_calls,
        {{ safe_divide('missed_calls', 'total_calls') }} as missed_call_rate,
        last_synced_at
    from daily

)

select * from final
