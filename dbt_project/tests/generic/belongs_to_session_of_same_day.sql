{#- Fails for every row whose `column_name` names no row of `to` (by `field`) on the same
    `partition_date`: a child row of a session is on its session's day. The parent side reads
    only the days the child side holds, so a day-scoped test reads only those days' files. -#}
{% test belongs_to_session_of_same_day(model, column_name, to, field) %}

with child as (
    select {{ column_name }} as from_field, partition_date
    from {{ model }}
    where {{ column_name }} is not null
),

parent as (
    select {{ field }} as to_field, partition_date
    from {{ to }}
    where partition_date in (select distinct partition_date from child)
)

select child.from_field, child.partition_date
from child
left join parent
    on child.from_field = parent.to_field
    and child.partition_date = parent.partition_date
where parent.to_field is null

{% endtest %}
