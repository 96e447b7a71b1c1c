-- Spans all history and is small (accounts x 7 x 24), so it is rebuilt whole on every run.
with

incoming_calls as (

    select * from {{ ref('fct_sessions') }}
    where
        channel = 'Voice'
        and direction = 'Incoming'

),

hourly as (

    select
        account_id,
        day_of_week,
        hour_of_day,
        count(*) as total_calls,
        count(case when was_missed then 1 end) as missed_calls
    from incoming_calls
    group by account_id, day_of_week, hour_of_day

),

final as (

    select
        account_id,
        day_of_week,
        hour_of_day,
        total_calls,
        missed_calls,
        {{ safe_divide('missed_calls', 'total_calls') }} as missed_call_rate
    from hourly

)

select * from final
